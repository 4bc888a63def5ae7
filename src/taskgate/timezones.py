"""IANA time zone validation shared by users and schedules."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskgate.errors import ValidationFailed


def load_zone(name: str) -> ZoneInfo:
    """The zone named ``name``; ``ValueError`` saying why when it is not one.

    ``zoneinfo`` reads the name as a path in the tz database: a directory such as ``America``
    raises ``IsADirectoryError``, an unreadable entry another ``OSError``, and neither is a
    ``ZoneInfoNotFoundError``. ``localtime`` is the host's zone, which would make a user's or
    a schedule's clock depend on the machine.
    """
    if not isinstance(name, str) or not name or name != name.strip() or name == "localtime":
        raise ValueError("must be an IANA time zone name such as 'Europe/Berlin'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None


def validate_timezone(name: str, field: str) -> ZoneInfo:
    try:
        return load_zone(name)
    except ValueError as exc:
        raise ValidationFailed.field(field, str(exc)) from None
