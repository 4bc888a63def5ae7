"""Multi-row inserts into several tables: what is stored is what the ORM would have stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asyncpg.pgproto.pgproto import UUID as PgUUID
from sqlalchemy import Table, select
from sqlalchemy.exc import IntegrityError

from taskgate.db.bulk import insert_rows
from taskgate.db.session import Database
from taskgate.ids import new_id
from taskgate.models import AuditRecord, Event

AUDIT: Table = AuditRecord.__table__  # type: ignore[assignment]
EVENTS: Table = Event.__table__  # type: ignore[assignment]
WHEN = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def _audit(n: int, **changes: Any) -> dict[str, Any]:
    row = {
        "id": new_id(),
        "action": f"probe.{n}",
        "outcome": "success",
        "actor_id": None,
        "detail": {"n": n, "name": "Zoë ✓", "nested": {"list": [1, None, "x"]}},
        "created_at": WHEN + timedelta(seconds=n),
    }
    return row | changes


def _event(n: int) -> dict[str, Any]:
    return {
        "type": "probe.stored",
        "owner_id": None,
        "task_id": new_id(),
        "payload": {"n": n, "empty": {}, "none": None},
        "created_at": WHEN,
    }


async def test_rows_of_several_tables_are_stored_with_their_values(db: Database) -> None:
    audits = [_audit(n) for n in range(3)]
    # A timestamp in another zone is stored as the same instant.
    audits[2]["created_at"] = audits[2]["created_at"].astimezone(datetime.now().astimezone().tzinfo)
    # A UUID as asyncpg returns them (its own subclass), as a principal's id may be.
    actor = new_id()
    audits[1]["actor_id"] = PgUUID(str(actor))
    events = [_event(n) for n in range(4)]
    async with db.transaction() as session:
        ids = await insert_rows(session, [(AUDIT, audits), (EVENTS, events)], EVENTS.c.id)
    async with db.transaction(write=False) as session:
        stored_audits = (await session.scalars(select(AuditRecord))).all()
        stored_events = (await session.scalars(select(Event).where(Event.id.in_(ids)))).all()
    by_id = {row.id: row for row in stored_audits}
    for row in audits:
        stored = by_id[row["id"]]
        assert (stored.action, stored.detail, stored.created_at) == (
            row["action"],
            row["detail"],
            row["created_at"],
        )
    assert by_id[audits[1]["id"]].actor_id == actor
    assert len(set(ids)) == 4
    assert sorted(e.payload["n"] for e in stored_events) == [0, 1, 2, 3]
    assert {e.task_id for e in stored_events} == {row["task_id"] for row in events}


async def test_nothing_is_stored_when_one_row_is_refused(db: Database) -> None:
    first = _audit(1)
    again = _audit(3, id=first["id"])

    async def write_then_repeat_an_id() -> None:
        async with db.transaction() as session:
            await insert_rows(session, [(AUDIT, [first, _audit(2)]), (EVENTS, [_event(1)])])
            await insert_rows(session, [(AUDIT, [again])])

    with pytest.raises(IntegrityError):
        await write_then_repeat_an_id()
    async with db.transaction(write=False) as session:
        assert (await session.scalars(select(AuditRecord))).all() == []
        assert (await session.scalars(select(Event))).all() == []


async def test_a_naive_timestamp_is_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with db.transaction() as session:
            await insert_rows(session, [(AUDIT, [_audit(1, created_at=datetime(2026, 1, 1))])])


async def test_rows_leaving_out_a_column_with_a_default_are_refused(db: Database) -> None:
    row = _audit(1)
    del row["detail"]
    with pytest.raises(ValueError, match="audit_records lack detail"):
        async with db.transaction() as session:
            await insert_rows(session, [(AUDIT, [row])])
