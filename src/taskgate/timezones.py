"""IANA time zone validation shared by users and schedules."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskgate.errors import ValidationFailed


def validate_timezone(name: str, field: str) -> ZoneInfo:
    try:
        if not name or name != name.strip():
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationFailed.field(field, f"unknown IANA time zone {name!r}") from exc
