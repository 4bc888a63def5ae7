from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from taskgate.schedules.timing import (
    CatchupPlan,
    CatchupPolicy,
    Timing,
    TimingError,
    fires_between,
    next_fire,
    plan_catchup,
    to_zone,
    validate_timing,
)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def cron(expression: str, timezone: str = "UTC") -> Timing:
    return Timing(cron_expression=expression, timezone=timezone)


def all_fires(t: Timing, start: datetime, end: datetime) -> list[datetime]:
    return fires_between(t, start, end, limit=10_000)


# --- validate_timing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "timing",
    [
        cron("*/5 * * * *"),
        cron("0 9 * * mon-fri", "Europe/Berlin"),
        cron("0 0 L * *"),
        cron("0 0 * * 5#3"),
        cron("0 0 29 2 *"),
        cron("0 0 * * 7"),
        cron("@yearly"),
        cron("@annually"),
        cron("@monthly"),
        cron("@weekly"),
        cron("@daily"),
        cron("@midnight"),
        cron("@hourly"),
        Timing(run_at=utc(2026, 5, 1, 12)),
        Timing(run_at=datetime(2026, 5, 1, 12, tzinfo=ZoneInfo("Asia/Kolkata"))),
        Timing(interval_seconds=60),
        Timing(interval_seconds=3600, anchor=utc(2026, 1, 1), timezone="Asia/Kolkata"),
    ],
)
def test_validate_accepts(timing: Timing) -> None:
    validate_timing(timing)


@pytest.mark.parametrize(
    ("timing", "field"),
    [
        (Timing(), "cron_expression"),
        (Timing(cron_expression="@daily", run_at=utc(2026, 1, 1)), "run_at"),
        (Timing(cron_expression="@daily", interval_seconds=60), "interval_seconds"),
        (Timing(run_at=utc(2026, 1, 1), interval_seconds=60), "interval_seconds"),
    ],
)
def test_validate_requires_exactly_one_kind(timing: Timing, field: str) -> None:
    with pytest.raises(TimingError) as caught:
        validate_timing(timing)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "   ",
        "garbage",
        "* * * *",
        "0 0 * * * *",  # seconds
        "0 0 12 * * ? 2026",  # seconds and year
        "60 * * * *",
        "0 24 * * *",
        "0 0 32 * *",
        "0 0 30 2 *",  # never matches
        "@reboot",
        "@every_minute",
        "H * * * *",
        "R 0 * * *",
        "0 0 * * 1,R",
    ],
)
def test_validate_rejects_cron(expression: str) -> None:
    with pytest.raises(TimingError) as caught:
        validate_timing(cron(expression))
    assert caught.value.field == "cron_expression"
    assert caught.value.message
    assert str(caught.value).startswith("cron_expression: ")


@pytest.mark.parametrize(
    "zone", ["Mars/Base", "", "America", "../etc/passwd", "/etc/localtime", "localtime", " UTC"]
)
def test_validate_rejects_timezone(zone: str) -> None:
    with pytest.raises(TimingError) as caught:
        validate_timing(cron("@daily", zone))
    assert caught.value.field == "timezone"


@pytest.mark.parametrize(
    ("interval", "minimum"),
    [(59, 60), (0, 60), (-60, 60), (299, 300), (0, 0), (10 * 366 * 86_400 + 1, 60)],
)
def test_validate_rejects_interval(interval: int, minimum: int) -> None:
    with pytest.raises(TimingError) as caught:
        validate_timing(Timing(interval_seconds=interval), min_interval_seconds=minimum)
    assert caught.value.field == "interval_seconds"


def test_validate_interval_minimum_is_a_parameter() -> None:
    validate_timing(Timing(interval_seconds=5), min_interval_seconds=5)


def test_validate_rejects_bool_interval() -> None:
    with pytest.raises(TimingError) as caught:
        validate_timing(Timing(interval_seconds=True), min_interval_seconds=1)
    assert caught.value.field == "interval_seconds"


@pytest.mark.parametrize(
    ("timing", "field"),
    [
        (Timing(run_at=datetime(2026, 1, 1)), "run_at"),
        (Timing(interval_seconds=60, anchor=datetime(2026, 1, 1)), "anchor"),
    ],
)
def test_validate_rejects_naive_datetimes(timing: Timing, field: str) -> None:
    with pytest.raises(TimingError) as caught:
        validate_timing(timing)
    assert caught.value.field == field


def test_timing_error_is_a_value_error() -> None:
    error = TimingError("timezone", "unknown time zone 'Mars/Base'")
    assert isinstance(error, ValueError)
    assert (error.field, error.message) == ("timezone", "unknown time zone 'Mars/Base'")


# --- next_fire: cron in fixed-offset zones ----------------------------------------------


def test_next_fire_is_strictly_after() -> None:
    t = cron("*/5 * * * *")
    assert next_fire(t, utc(2026, 1, 1, 10, 0)) == utc(2026, 1, 1, 10, 5)
    assert next_fire(t, utc(2026, 1, 1, 10, 4, 59)) == utc(2026, 1, 1, 10, 5)
    assert next_fire(t, utc(2026, 1, 1, 10, 5) - timedelta(microseconds=1)) == utc(
        2026, 1, 1, 10, 5
    )


def test_next_fire_returns_utc_for_any_aware_input() -> None:
    after = datetime(2026, 1, 1, 11, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 10:00Z
    fire = next_fire(cron("0 * * * *", "Asia/Kolkata"), after)
    assert fire == utc(2026, 1, 1, 10, 30)
    assert fire is not None
    assert fire.tzinfo is UTC


def test_next_fire_rejects_naive_after() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire(cron("@daily"), datetime(2026, 1, 1))


def test_next_fire_rejects_invalid_timing() -> None:
    with pytest.raises(TimingError) as caught:
        next_fire(cron("@daily", "Mars/Base"), utc(2026, 1, 1))
    assert caught.value.field == "timezone"
    with pytest.raises(TimingError):
        next_fire(cron("0 0 * * * *"), utc(2026, 1, 1))


def test_kolkata_half_hour_offset() -> None:
    t = cron("0 9 * * *", "Asia/Kolkata")
    assert all_fires(t, utc(2026, 6, 1), utc(2026, 6, 3)) == [
        utc(2026, 6, 1, 3, 30),
        utc(2026, 6, 2, 3, 30),
    ]


def test_day_of_week() -> None:
    # 2026-01-07 is a Wednesday; Monday 09:00 CET is 08:00Z.
    assert next_fire(cron("0 9 * * 1", "Europe/Berlin"), utc(2026, 1, 7)) == utc(2026, 1, 12, 8)
    assert next_fire(cron("0 9 * * sun", "UTC"), utc(2026, 1, 7)) == utc(2026, 1, 11, 9)
    assert next_fire(cron("0 9 * * 7", "UTC"), utc(2026, 1, 7)) == utc(2026, 1, 11, 9)
    weekdays = all_fires(cron("30 8 * * mon-fri", "UTC"), utc(2026, 1, 9), utc(2026, 1, 14))
    assert weekdays == [
        utc(2026, 1, 9, 8, 30),
        utc(2026, 1, 12, 8, 30),
        utc(2026, 1, 13, 8, 30),
    ]


def test_macros() -> None:
    assert all_fires(cron("@hourly"), utc(2026, 1, 1, 10, 15), utc(2026, 1, 1, 12, 30)) == [
        utc(2026, 1, 1, 11),
        utc(2026, 1, 1, 12),
    ]
    # Local midnight in Berlin is 23:00Z in winter.
    assert all_fires(cron("@daily", "Europe/Berlin"), utc(2026, 1, 1), utc(2026, 1, 3)) == [
        utc(2026, 1, 1, 23),
        utc(2026, 1, 2, 23),
    ]
    assert next_fire(cron("@midnight", "Asia/Kolkata"), utc(2026, 1, 1)) == utc(2026, 1, 1, 18, 30)
    assert next_fire(cron("@weekly"), utc(2026, 1, 7)) == utc(2026, 1, 11)  # Sunday
    assert next_fire(cron("@monthly"), utc(2026, 1, 7)) == utc(2026, 2, 1)
    assert next_fire(cron("@yearly"), utc(2026, 1, 7)) == utc(2027, 1, 1)
    assert next_fire(cron("@annually"), utc(2026, 1, 7)) == utc(2027, 1, 1)


def test_leap_day() -> None:
    assert next_fire(cron("0 12 29 2 *"), utc(2026, 1, 1)) == utc(2028, 2, 29, 12)


def test_chatham_quarter_hour_offset() -> None:
    # Pacific/Chatham is +12:45 in the southern winter.
    assert next_fire(cron("0 9 * * *", "Pacific/Chatham"), utc(2026, 6, 14)) == utc(
        2026, 6, 14, 20, 15
    )


# --- next_fire: cron across daylight saving time ----------------------------------------


def test_spring_forward_new_york_fires_once_shifted_by_the_gap() -> None:
    # 2026-03-08 02:00 EST jumps to 03:00 EDT; 02:30 does not exist and fires at 03:30 EDT.
    t = cron("30 2 * * *", "America/New_York")
    assert all_fires(t, utc(2026, 3, 7), utc(2026, 3, 10)) == [
        utc(2026, 3, 7, 7, 30),  # 02:30 EST
        utc(2026, 3, 8, 7, 30),  # 03:30 EDT
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
    ]


def test_spring_forward_berlin_fires_once_shifted_by_the_gap() -> None:
    # 2026-03-29 02:00 CET jumps to 03:00 CEST; 02:30 fires at 03:30 CEST.
    t = cron("30 2 * * *", "Europe/Berlin")
    assert all_fires(t, utc(2026, 3, 28), utc(2026, 3, 31)) == [
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 30, 0, 30),
    ]


def test_spring_forward_shift_found_when_after_is_later_on_the_wall_clock() -> None:
    # 03:15 EDT is later on the wall clock than 02:30, yet the shifted 02:30 is still ahead.
    t = cron("30 2 * * *", "America/New_York")
    assert next_fire(t, utc(2026, 3, 8, 7, 15)) == utc(2026, 3, 8, 7, 30)
    assert next_fire(t, utc(2026, 3, 8, 7, 30)) == utc(2026, 3, 9, 6, 30)


def test_spring_forward_shift_that_meets_a_real_time_fires_once() -> None:
    t = cron("15,30 2,3 * * *", "America/New_York")
    assert all_fires(t, utc(2026, 3, 8), utc(2026, 3, 9)) == [
        utc(2026, 3, 8, 7, 15),
        utc(2026, 3, 8, 7, 30),
    ]


def test_spring_forward_lord_howe_half_hour_gap() -> None:
    # 2026-10-04 02:00 +10:30 jumps to 02:30 +11:00; 02:15 fires at 02:45 +11:00.
    t = cron("15 2 * * *", "Australia/Lord_Howe")
    assert all_fires(t, utc(2026, 10, 2), utc(2026, 10, 5)) == [
        utc(2026, 10, 2, 15, 45),  # 02:15 +10:30
        utc(2026, 10, 3, 15, 45),  # 02:45 +11:00
        utc(2026, 10, 4, 15, 15),  # 02:15 +11:00
    ]


def test_spring_forward_chatham() -> None:
    # 2026-09-27 02:45 +12:45 jumps to 03:45 +13:45; 03:00 fires at 04:00 +13:45.
    t = cron("0 3 * * *", "Pacific/Chatham")
    assert all_fires(t, utc(2026, 9, 25), utc(2026, 9, 28)) == [
        utc(2026, 9, 25, 14, 15),
        utc(2026, 9, 26, 14, 15),
        utc(2026, 9, 27, 13, 15),
    ]


def test_fall_back_new_york_fixed_hour_fires_once_at_first_occurrence() -> None:
    # 2026-11-01 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    t = cron("30 1 * * *", "America/New_York")
    assert all_fires(t, utc(2026, 10, 31), utc(2026, 11, 3)) == [
        utc(2026, 10, 31, 5, 30),
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT, fold=0
        utc(2026, 11, 2, 6, 30),
    ]
    # Asked from inside the repeated hour, the second 01:30 is not a fire.
    assert next_fire(t, utc(2026, 11, 1, 5, 45)) == utc(2026, 11, 2, 6, 30)


def test_fall_back_berlin_fixed_hour_fires_once() -> None:
    # 2026-10-25 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    t = cron("30 2 * * *", "Europe/Berlin")
    assert all_fires(t, utc(2026, 10, 24), utc(2026, 10, 27)) == [
        utc(2026, 10, 24, 0, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
    ]


def test_hourly_across_spring_forward_fires_every_real_hour() -> None:
    t = cron("0 * * * *", "America/New_York")
    assert all_fires(t, utc(2026, 3, 8, 4, 30), utc(2026, 3, 8, 9)) == [
        utc(2026, 3, 8, 5),  # 00:00 EST
        utc(2026, 3, 8, 6),  # 01:00 EST
        utc(2026, 3, 8, 7),  # 03:00 EDT (02:00 does not exist)
        utc(2026, 3, 8, 8),  # 04:00 EDT
        utc(2026, 3, 8, 9),
    ]


def test_hourly_across_fall_back_fires_in_the_repeated_hour_too() -> None:
    t = cron("30 * * * *", "America/New_York")
    assert all_fires(t, utc(2026, 11, 1, 3), utc(2026, 11, 1, 8)) == [
        utc(2026, 11, 1, 3, 30),  # 23:30 EDT
        utc(2026, 11, 1, 4, 30),  # 00:30 EDT
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT
        utc(2026, 11, 1, 6, 30),  # 01:30 EST
        utc(2026, 11, 1, 7, 30),  # 02:30 EST
    ]
    # Asked from the first pass, the next fire is the second pass.
    assert next_fire(t, utc(2026, 11, 1, 5, 45)) == utc(2026, 11, 1, 6, 30)


@pytest.mark.parametrize("expression", ["@hourly", "0 */1 * * *", "0 0-23 * * *"])
def test_every_hour_spellings_fire_in_the_repeated_hour(expression: str) -> None:
    t = cron(expression, "America/New_York")
    assert all_fires(t, utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 7)) == [
        utc(2026, 11, 1, 5),
        utc(2026, 11, 1, 6),
        utc(2026, 11, 1, 7),
    ]


def test_hourly_across_fall_back_lord_howe_half_hour_fold() -> None:
    # 2026-04-05 02:00 +11:00 falls back to 01:30 +10:30; 01:45 happens twice.
    t = cron("45 * * * *", "Australia/Lord_Howe")
    assert all_fires(t, utc(2026, 4, 4, 13), utc(2026, 4, 4, 17)) == [
        utc(2026, 4, 4, 13, 45),  # 00:45 +11:00
        utc(2026, 4, 4, 14, 45),  # 01:45 +11:00
        utc(2026, 4, 4, 15, 15),  # 01:45 +10:30
        utc(2026, 4, 4, 16, 15),  # 02:45 +10:30
    ]


@pytest.mark.parametrize(
    ("zone", "start", "end"),
    [
        ("America/New_York", utc(2026, 3, 8, 4), utc(2026, 3, 8, 10)),
        ("America/New_York", utc(2026, 11, 1, 3), utc(2026, 11, 1, 9)),
        ("Europe/Berlin", utc(2026, 3, 28, 23), utc(2026, 3, 29, 4)),
        ("Europe/Berlin", utc(2026, 10, 24, 23), utc(2026, 10, 25, 4)),
    ],
)
def test_quarter_hourly_across_transitions_is_evenly_spaced(
    zone: str, start: datetime, end: datetime
) -> None:
    fires = all_fires(cron("*/15 * * * *", zone), start, end)
    assert fires[0] == start + timedelta(minutes=15)
    assert fires[-1] == end
    assert all(b - a == timedelta(minutes=15) for a, b in pairwise(fires))


def reference_fires(
    expression: str, zone_name: str, start: datetime, end: datetime, *, every_hour: bool
) -> list[datetime]:
    """The documented rules applied by brute force, one UTC minute and one wall minute at a time."""
    zone = ZoneInfo(zone_name)
    found = set()
    instant = start.replace(second=0, microsecond=0)
    while instant <= end:
        local = instant.astimezone(zone)
        wall = local.replace(tzinfo=None, fold=0)
        if croniter.match(expression, wall) and (local.fold == 0 or every_hour):
            found.add(instant)
        instant += timedelta(minutes=1)
    wall = start.astimezone(zone).replace(tzinfo=None) - timedelta(hours=3)
    while wall <= end.astimezone(zone).replace(tzinfo=None):
        shifted = wall.replace(tzinfo=zone).astimezone(UTC)
        exists = shifted.astimezone(zone).replace(tzinfo=None) == wall
        if not exists and croniter.match(expression, wall):
            found.add(shifted)
        wall += timedelta(minutes=1)
    return sorted(f for f in found if start < f <= end)


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("America/New_York", utc(2026, 3, 7, 18)),
        ("America/New_York", utc(2026, 10, 31, 18)),
        ("Europe/Berlin", utc(2026, 3, 28, 12)),
        ("Europe/Berlin", utc(2026, 10, 24, 12)),
        ("Australia/Lord_Howe", utc(2026, 4, 4, 3)),
        ("Australia/Lord_Howe", utc(2026, 10, 3, 3)),
        ("Pacific/Chatham", utc(2026, 4, 4, 3)),
        ("Pacific/Chatham", utc(2026, 9, 26, 3)),
    ],
)
@pytest.mark.parametrize(
    ("expression", "every_hour"),
    [
        ("*/20 * * * *", True),
        ("15,45 * * * *", True),
        ("0,30 1-3 * * *", False),
        ("45 2 * * *", False),
        ("5 3 * * *", False),
    ],
)
def test_matches_brute_force_reference(
    zone: str, start: datetime, expression: str, every_hour: bool
) -> None:
    end = start + timedelta(hours=20)
    fires = all_fires(cron(expression, zone), start, end)
    assert fires == reference_fires(expression, zone, start, end, every_hour=every_hour)
    assert len(set(fires)) == len(fires)


# --- next_fire: one-off and interval -----------------------------------------------------


def test_one_off() -> None:
    run_at = datetime(2026, 5, 1, 14, tzinfo=ZoneInfo("Europe/Berlin"))  # 12:00Z
    t = Timing(run_at=run_at)
    fire = next_fire(t, utc(2026, 5, 1))
    assert fire == utc(2026, 5, 1, 12)
    assert fire is not None
    assert fire.tzinfo is UTC
    assert next_fire(t, utc(2026, 5, 1, 12)) is None
    assert next_fire(t, utc(2026, 6, 1)) is None


def test_interval_defaults_to_the_epoch_anchor() -> None:
    t = Timing(interval_seconds=3600)
    assert next_fire(t, utc(2026, 1, 1, 10, 20)) == utc(2026, 1, 1, 11)
    assert next_fire(t, utc(2026, 1, 1, 11)) == utc(2026, 1, 1, 12)


def test_interval_counts_from_the_anchor() -> None:
    t = Timing(interval_seconds=90, anchor=utc(2026, 1, 1, 10, 0, 10))
    assert next_fire(t, utc(2026, 1, 1, 9)) == utc(2026, 1, 1, 10, 0, 10)
    assert next_fire(t, utc(2026, 1, 1, 10, 0, 10)) == utc(2026, 1, 1, 10, 1, 40)
    assert all_fires(t, utc(2026, 1, 1, 10, 1), utc(2026, 1, 1, 10, 5)) == [
        utc(2026, 1, 1, 10, 1, 40),
        utc(2026, 1, 1, 10, 3, 10),
        utc(2026, 1, 1, 10, 4, 40),
    ]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_interval_ignores_daylight_saving_time(zone: str) -> None:
    hourly = Timing(interval_seconds=3600, timezone=zone, anchor=utc(2026, 11, 1, 4))
    assert all_fires(hourly, utc(2026, 11, 1, 4), utc(2026, 11, 1, 8)) == [
        utc(2026, 11, 1, 5),  # 01:00 EDT
        utc(2026, 11, 1, 6),  # 01:00 EST
        utc(2026, 11, 1, 7),
        utc(2026, 11, 1, 8),
    ]
    daily = Timing(interval_seconds=86_400, timezone=zone, anchor=utc(2026, 3, 7, 14))
    # 09:00 EST, then 10:00 EDT: exactly 24 hours apart.
    assert next_fire(daily, utc(2026, 3, 7, 14)) == utc(2026, 3, 8, 14)


def test_interval_anchor_in_another_zone_is_normalised() -> None:
    anchor = datetime(2026, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    fire = next_fire(Timing(interval_seconds=600, anchor=anchor), utc(2026, 1, 1, 0, 5))
    assert fire == utc(2026, 1, 1, 0, 10)
    assert fire is not None
    assert fire.tzinfo is UTC


# --- fires_between ------------------------------------------------------------------------


def test_fires_between_excludes_start_and_includes_end() -> None:
    t = cron("*/10 * * * *")
    assert all_fires(t, utc(2026, 1, 1, 10), utc(2026, 1, 1, 10, 30)) == [
        utc(2026, 1, 1, 10, 10),
        utc(2026, 1, 1, 10, 20),
        utc(2026, 1, 1, 10, 30),
    ]


def test_fires_between_limit_keeps_the_earliest() -> None:
    t = cron("*/10 * * * *")
    start, end = utc(2026, 1, 1, 10), utc(2026, 1, 2)
    assert fires_between(t, start, end, limit=2) == [
        utc(2026, 1, 1, 10, 10),
        utc(2026, 1, 1, 10, 20),
    ]
    assert fires_between(t, start, end, limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        fires_between(t, start, end, limit=-1)


def test_fires_between_empty_window() -> None:
    t = cron("*/10 * * * *")
    assert all_fires(t, utc(2026, 1, 1, 10, 30), utc(2026, 1, 1, 10)) == []
    assert all_fires(t, utc(2026, 1, 1, 10, 1), utc(2026, 1, 1, 10, 9)) == []
    assert all_fires(Timing(run_at=utc(2026, 1, 1)), utc(2026, 1, 2), utc(2026, 1, 3)) == []


# --- to_zone ------------------------------------------------------------------------------


def test_to_zone() -> None:
    local = to_zone(utc(2026, 1, 1, 12), "Asia/Kolkata")
    assert local == utc(2026, 1, 1, 12)
    assert (local.hour, local.minute) == (17, 30)
    assert local.utcoffset() == timedelta(hours=5, minutes=30)
    with pytest.raises(TimingError):
        to_zone(utc(2026, 1, 1), "Mars/Base")
    with pytest.raises(ValueError, match="timezone-aware"):
        to_zone(datetime(2026, 1, 1), "UTC")


# --- plan_catchup -------------------------------------------------------------------------

EVERY_TEN = cron("*/10 * * * *")
MISSED = [utc(2026, 1, 1, 10, m) for m in (0, 10, 20, 30)]


def test_catchup_all_fires_every_missed_occurrence() -> None:
    plan = plan_catchup(
        EVERY_TEN, last_due=utc(2026, 1, 1, 10), now=utc(2026, 1, 1, 10, 35), policy="all"
    )
    assert plan == CatchupPlan(fire=MISSED, skip=[], next_run_at=utc(2026, 1, 1, 10, 40))


def test_catchup_all_fires_the_newest_cap_and_skips_the_rest() -> None:
    plan = plan_catchup(
        EVERY_TEN, last_due=utc(2026, 1, 1, 10), now=utc(2026, 1, 1, 10, 35), policy="all", cap=2
    )
    assert plan.fire == MISSED[2:]
    assert plan.skip == MISSED[:2]


def test_catchup_one_fires_the_latest() -> None:
    plan = plan_catchup(
        EVERY_TEN, last_due=utc(2026, 1, 1, 10), now=utc(2026, 1, 1, 10, 35), policy="one"
    )
    assert plan == CatchupPlan(
        fire=[MISSED[-1]], skip=MISSED[:-1], next_run_at=utc(2026, 1, 1, 10, 40)
    )


def test_catchup_skip_drops_late_occurrences() -> None:
    plan = plan_catchup(
        EVERY_TEN, last_due=utc(2026, 1, 1, 10), now=utc(2026, 1, 1, 10, 35), policy="skip"
    )
    assert plan == CatchupPlan(fire=[], skip=MISSED, next_run_at=utc(2026, 1, 1, 10, 40))


@pytest.mark.parametrize(
    ("now", "grace", "fired"),
    [
        (utc(2026, 1, 1, 10, 30), 60, True),
        (utc(2026, 1, 1, 10, 31), 60, True),  # exactly at the grace limit
        (utc(2026, 1, 1, 10, 31, 1), 60, False),
        (utc(2026, 1, 1, 10, 35), 300, True),
        (utc(2026, 1, 1, 10, 30, 1), 0, False),
    ],
)
def test_catchup_skip_fires_the_latest_when_on_time(now: datetime, grace: int, fired: bool) -> None:
    plan = plan_catchup(
        EVERY_TEN, last_due=utc(2026, 1, 1, 10), now=now, policy="skip", grace_seconds=grace
    )
    assert plan.fire == ([MISSED[-1]] if fired else [])
    assert plan.skip == (MISSED[:-1] if fired else MISSED)


def test_catchup_on_schedule_fires_the_due_occurrence() -> None:
    due = utc(2026, 1, 1, 10, 10)
    for policy in ("skip", "one", "all"):
        plan = plan_catchup(EVERY_TEN, last_due=due, now=due, policy=policy)
        assert plan == CatchupPlan(fire=[due], skip=[], next_run_at=utc(2026, 1, 1, 10, 20))


@pytest.mark.parametrize("policy", ["skip", "one", "all"])
@pytest.mark.parametrize("cap", [1, 3, 100])
def test_catchup_accounts_for_every_missed_occurrence(policy: CatchupPolicy, cap: int) -> None:
    last_due, now = utc(2026, 1, 1, 10), utc(2026, 1, 1, 13, 5)
    plan = plan_catchup(
        EVERY_TEN,
        last_due=last_due,
        now=now,
        policy=policy,
        cap=cap,
    )
    missed = [last_due, *all_fires(EVERY_TEN, last_due, now)]
    assert len(missed) == 19
    assert sorted(plan.fire + plan.skip) == missed
    assert not set(plan.fire) & set(plan.skip)
    assert plan.fire == sorted(plan.fire)
    assert plan.skip == sorted(plan.skip)
    assert plan.next_run_at == utc(2026, 1, 1, 13, 10)


def test_catchup_one_off() -> None:
    t = Timing(run_at=utc(2026, 1, 1, 10))
    late = plan_catchup(t, last_due=utc(2026, 1, 1, 10), now=utc(2026, 1, 1, 11), policy="one")
    assert late == CatchupPlan(fire=[utc(2026, 1, 1, 10)], skip=[], next_run_at=None)
    dropped = plan_catchup(t, last_due=utc(2026, 1, 1, 10), now=utc(2026, 1, 1, 11), policy="skip")
    assert dropped == CatchupPlan(fire=[], skip=[utc(2026, 1, 1, 10)], next_run_at=None)


def test_catchup_interval() -> None:
    t = Timing(interval_seconds=3600)
    plan = plan_catchup(t, last_due=utc(2026, 1, 1, 10), now=utc(2026, 1, 1, 12, 30), policy="all")
    assert plan == CatchupPlan(
        fire=[utc(2026, 1, 1, 10), utc(2026, 1, 1, 11), utc(2026, 1, 1, 12)],
        skip=[],
        next_run_at=utc(2026, 1, 1, 13),
    )


def test_catchup_across_fall_back_keeps_both_passes_of_an_hourly_job() -> None:
    t = cron("30 * * * *", "America/New_York")
    plan = plan_catchup(t, last_due=utc(2026, 11, 1, 4, 30), now=utc(2026, 11, 1, 7), policy="all")
    assert plan.fire == [utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)]
    assert plan.next_run_at == utc(2026, 11, 1, 7, 30)


def test_catchup_rejects_bad_arguments() -> None:
    due = utc(2026, 1, 1, 10)
    with pytest.raises(ValueError, match="earlier"):
        plan_catchup(EVERY_TEN, last_due=due, now=due - timedelta(seconds=1), policy="all")
    with pytest.raises(ValueError, match="cap"):
        plan_catchup(EVERY_TEN, last_due=due, now=due, policy="all", cap=0)
    with pytest.raises(ValueError, match="grace"):
        plan_catchup(EVERY_TEN, last_due=due, now=due, policy="skip", grace_seconds=-1)
    with pytest.raises(ValueError, match="policy"):
        plan_catchup(EVERY_TEN, last_due=due, now=due, policy="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_catchup(EVERY_TEN, last_due=datetime(2026, 1, 1), now=due, policy="all")
