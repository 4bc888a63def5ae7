"""When a schedule fires: cron, fixed-interval and one-off timings, with no database.

Every instant taken or returned is timezone-aware; every instant returned is in UTC.

Cron expressions are evaluated on the schedule's wall clock (``timezone``) and each matching
wall time is mapped to an instant with :mod:`zoneinfo`, so offsets follow the tz database:

* Spring forward: a wall time inside the gap (02:30 in America/New_York on 2026-03-08) does
  not exist. It fires once, shifted forward by the length of the gap (03:30 local, the offset
  in force before the change, as PEP 495 reads a ``fold=0`` time in a gap). If the shifted
  instant coincides with another match (``*/15 * * * *``), it fires once.
* Fall back: a wall time that occurs twice (01:30 in America/New_York on 2026-11-01) fires
  once, at its first occurrence (``fold=0``), when the expression names fixed hours. When it
  matches every hour of the day (hour field ``*``, ``*/1``, ``0-23``, ``@hourly``), it also
  fires on the second pass, so an hourly job runs in every real hour.

Intervals are pure UTC arithmetic: occurrences are ``anchor + k * interval_seconds`` for
``k >= 0``, unaffected by daylight saving time; without an anchor the Unix epoch is used, so
an hourly interval fires at the top of every UTC hour.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice, takewhile
from typing import Literal
from zoneinfo import ZoneInfo

from croniter import croniter

from taskgate.timezones import load_zone

CatchupPolicy = Literal["skip", "one", "all"]
TimingKind = Literal["cron_expression", "run_at", "interval_seconds"]

CRON_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
MAX_INTERVAL_SECONDS = 10 * 366 * 86_400

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Offsets are compared this far either side of an instant to find a nearby change. It exceeds
# the largest jump in the tz database (Pacific/Apia skipped a whole day in 2011).
_OFFSET_PROBE = timedelta(hours=26)
_CATCHUP_POLICIES = ("skip", "one", "all")


class TimingError(ValueError):
    """A timing that cannot be scheduled; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Timing:
    """Exactly one of ``cron_expression``, ``run_at`` or ``interval_seconds`` is set."""

    cron_expression: str | None = None
    run_at: datetime | None = None
    interval_seconds: int | None = None
    timezone: str = "UTC"
    anchor: datetime | None = None


@dataclass(frozen=True)
class CatchupPlan:
    """What to do with the occurrences missed since ``last_due``; all lists earliest first."""

    fire: list[datetime]
    skip: list[datetime]
    next_run_at: datetime | None


def validate_timing(t: Timing, *, min_interval_seconds: int = 60) -> None:
    """Raise :class:`TimingError` unless ``t`` can be scheduled.

    When none of the three kinds is given the error names ``cron_expression``; when several
    are, it names the second one given, in the order cron_expression, run_at,
    interval_seconds. ``anchor`` only matters for intervals but must be aware when set.
    """
    _kind(t)
    _zone(t.timezone)
    if t.anchor is not None:
        _require_aware_field(t.anchor, "anchor")
    if t.cron_expression is not None:
        _check_cron(t.cron_expression)
    elif t.run_at is not None:
        _require_aware_field(t.run_at, "run_at")
    else:
        _check_interval(t.interval_seconds, min_interval_seconds)


def next_fire(t: Timing, after: datetime) -> datetime | None:
    """The first occurrence strictly after ``after``; ``None`` when there is none."""
    return next(_fires_after(t, after), None)


def fires_between(t: Timing, start: datetime, end: datetime, *, limit: int) -> list[datetime]:
    """Occurrences in ``(start, end]``, earliest first, at most ``limit`` of them."""
    _require_aware(end, "end")
    if limit < 0:
        raise ValueError("limit must not be negative")
    upcoming = takewhile(lambda fire: fire <= end, _fires_after(t, start))
    return list(islice(upcoming, limit))


def to_zone(dt: datetime, tz: str) -> datetime:
    """``dt`` as wall-clock time in the IANA zone ``tz``."""
    _require_aware(dt, "dt")
    return dt.astimezone(_zone(tz))


def plan_catchup(
    t: Timing,
    *,
    last_due: datetime,
    now: datetime,
    policy: CatchupPolicy,
    cap: int = 100,
    grace_seconds: int = 60,
) -> CatchupPlan:
    """Split the occurrences in ``[last_due, now]`` into those to fire and those to skip.

    ``last_due`` is the stored ``next_run_at`` and always counts as missed, even if the
    timing has changed since it was stored. Every missed occurrence lands in ``fire`` or
    ``skip``, so the list grows with the length of the outage.

    * ``all``: fire them, but only the newest ``cap``; older ones are skipped.
    * ``one``: fire the latest, skip the others.
    * ``skip``: fire the latest only if it is at most ``grace_seconds`` old (on time), skip
      every other one.

    ``next_run_at`` is the first occurrence strictly after ``now``.
    """
    _require_aware(last_due, "last_due")
    _require_aware(now, "now")
    if now < last_due:
        raise ValueError("now must not be earlier than last_due")
    if policy not in _CATCHUP_POLICIES:
        raise ValueError(f"policy must be one of {', '.join(_CATCHUP_POLICIES)}")
    if cap < 1:
        raise ValueError("cap must be at least 1")
    if grace_seconds < 0:
        raise ValueError("grace_seconds must not be negative")

    missed = [last_due.astimezone(UTC)]
    next_run_at = None
    for fire in _fires_after(t, last_due):
        if fire > now:
            next_run_at = fire
            break
        missed.append(fire)

    if policy == "all":
        fire_count = min(cap, len(missed))
    elif policy == "one":
        fire_count = 1
    else:
        on_time = now - missed[-1] <= timedelta(seconds=grace_seconds)
        fire_count = 1 if on_time else 0
    split = len(missed) - fire_count
    return CatchupPlan(fire=missed[split:], skip=missed[:split], next_run_at=next_run_at)


def _fires_after(t: Timing, after: datetime) -> Iterator[datetime]:
    """All occurrences strictly after ``after``, strictly increasing, in UTC."""
    _require_aware(after, "after")
    kind = _kind(t)
    if kind == "cron_expression":
        assert t.cron_expression is not None
        _check_cron(t.cron_expression)
        return _cron_fires(t.cron_expression, _zone(t.timezone), after)
    if kind == "run_at":
        assert t.run_at is not None
        run_at = _require_aware_field(t.run_at, "run_at").astimezone(UTC)
        return iter([run_at] if run_at > after else [])
    assert t.interval_seconds is not None
    _check_interval(t.interval_seconds, 1)
    anchor = _EPOCH if t.anchor is None else _require_aware_field(t.anchor, "anchor")
    return _interval_fires(anchor.astimezone(UTC), timedelta(seconds=t.interval_seconds), after)


def _interval_fires(anchor: datetime, step: timedelta, after: datetime) -> Iterator[datetime]:
    k = 0 if after < anchor else (after - anchor) // step + 1
    try:
        while True:
            yield anchor + k * step
            k += 1
    except OverflowError:
        return


def _cron_fires(expression: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Map croniter's naive wall times to instants and yield those after ``after`` in order.

    The mapping is not monotonic near an offset change (a shifted gap time lands after real
    times that follow it), so candidates wait in a heap until no later wall time can map to
    an earlier instant.
    """
    every_hour = croniter.expand(expression)[0][1] == ["*"]
    local_after = after.astimezone(zone).replace(tzinfo=None, fold=0)
    # Start early enough to see wall times before ``after`` that map after it: gap times
    # shifted forward, and second passes through a repeated hour.
    walls = croniter(expression, local_after - _offset_spread(zone, after) - timedelta(minutes=1))
    pending: list[datetime] = []
    last = after
    while True:
        try:
            wall: datetime = walls.get_next(datetime)
        except (ValueError, OverflowError):  # no further match, or past year 9999
            break
        instants = _wall_to_instants(wall, zone, both_folds=every_hour)
        for instant in instants:
            if instant > last:
                heapq.heappush(pending, instant)
        horizon = instants[0] - _offset_spread(zone, instants[0])
        while pending and pending[0] <= horizon:
            instant = heapq.heappop(pending)
            if instant > last:
                yield instant
                last = instant
    while pending:
        instant = heapq.heappop(pending)
        if instant > last:
            yield instant
            last = instant


def _wall_to_instants(wall: datetime, zone: ZoneInfo, *, both_folds: bool) -> list[datetime]:
    # fold=0 is the first pass through a repeated time, and for a time in a gap it applies
    # the offset before the gap, which shifts it forward by the gap's length.
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if both_folds:
        second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        # Later only for a repeated time; in a gap fold=1 lands before the gap instead.
        if second > first:
            return [first, second]
    return [first]


def _offset_spread(zone: ZoneInfo, instant: datetime) -> timedelta:
    """How much the zone's UTC offset changes within ``_OFFSET_PROBE`` of ``instant``."""
    offsets = []
    for probe in (instant - _OFFSET_PROBE, instant, instant + _OFFSET_PROBE):
        offset = probe.astimezone(zone).utcoffset()
        assert offset is not None
        offsets.append(offset)
    return max(offsets) - min(offsets)


def _kind(t: Timing) -> TimingKind:
    values: tuple[tuple[TimingKind, object], ...] = (
        ("cron_expression", t.cron_expression),
        ("run_at", t.run_at),
        ("interval_seconds", t.interval_seconds),
    )
    given = [name for name, value in values if value is not None]
    if not given:
        raise TimingError(
            "cron_expression", "give one of cron_expression, run_at or interval_seconds"
        )
    if len(given) > 1:
        raise TimingError(given[1], f"give only one of {' and '.join(given)}")
    return given[0]


def _check_cron(expression: str) -> None:
    if not isinstance(expression, str) or not expression.strip():
        raise TimingError("cron_expression", "must be a cron expression such as '0 * * * *'")
    if expression.startswith("@"):
        if expression not in CRON_MACROS:
            raise TimingError(
                "cron_expression", f"unknown macro; use one of {', '.join(sorted(CRON_MACROS))}"
            )
    else:
        fields = expression.split()
        if len(fields) != 5:
            raise TimingError(
                "cron_expression",
                "must have 5 fields (minute hour day-of-month month day-of-week); "
                "seconds and years are not supported",
            )
        # croniter's hashed (H) and random (R) values would make the schedule unpredictable.
        if any(part[:1] in ("H", "h", "R", "r") for field in fields for part in field.split(",")):
            raise TimingError("cron_expression", "H and R values are not supported")
    try:
        # Naive on purpose: croniter walks wall-clock time. Fails if nothing ever matches.
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)  # noqa: DTZ001
    except ValueError as error:  # croniter's errors are ValueErrors
        raise TimingError("cron_expression", f"not a valid cron expression: {error}") from None


def _check_interval(interval_seconds: int | None, minimum: int) -> None:
    if not isinstance(interval_seconds, int) or isinstance(interval_seconds, bool):
        raise TimingError("interval_seconds", "must be a whole number of seconds")
    minimum = max(minimum, 1)
    if interval_seconds < minimum:
        raise TimingError("interval_seconds", f"must be at least {minimum}")
    if interval_seconds > MAX_INTERVAL_SECONDS:
        raise TimingError("interval_seconds", f"must be at most {MAX_INTERVAL_SECONDS}")


def _zone(name: str) -> ZoneInfo:
    try:
        return load_zone(name)
    except ValueError as exc:
        raise TimingError("timezone", str(exc)) from None


def _require_aware_field(dt: datetime, field: str) -> datetime:
    if not isinstance(dt, datetime) or dt.utcoffset() is None:
        raise TimingError(field, "must be a date-time with a UTC offset")
    return dt


def _require_aware(dt: datetime, name: str) -> None:
    if dt.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
