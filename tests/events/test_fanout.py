"""The fan-out's index: an event meets only the streams of its owner filed under a subject it
carries (or a feed), and a stream that ends with another subject's event still gets that."""

from __future__ import annotations

import uuid

from taskgate.clock import utcnow
from taskgate.db.session import Database
from taskgate.events.bus import EventBus
from taskgate.events.fanout import EventFanout
from taskgate.events.filters import EndCondition, StreamSpec, TypeFilter
from taskgate.events.wire import EventRecord
from taskgate.settings import Settings


def _fanout(settings: Settings, db: Database) -> EventFanout:
    return EventFanout(db, settings.streams, EventBus(settings, db).subscribe())


def _event(event_id: int, type: str, owner: uuid.UUID, **subjects: uuid.UUID) -> EventRecord:
    return EventRecord(event_id, type, owner, utcnow(), {}, **subjects)


def _task_spec(owner: uuid.UUID, task_id: uuid.UUID, types: str | None = None) -> StreamSpec:
    end = EndCondition("task_id", task_id, frozenset({"task.completed"}))
    return StreamSpec(
        owner, equals=(("task_id", task_id),), types=TypeFilter.parse(types), ends=(end,)
    )


async def test_an_event_reaches_exactly_the_streams_that_want_it(
    settings: Settings, db: Database
) -> None:
    fanout = _fanout(settings, db)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    task, other_task, run = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    streams = {
        "task": fanout.subscribe(_task_spec(alice, task), ping=False),
        "task, output only": fanout.subscribe(_task_spec(alice, task, "task.output.*"), ping=False),
        "other task": fanout.subscribe(_task_spec(alice, other_task), ping=False),
        "run of task": fanout.subscribe(
            StreamSpec(
                alice,
                equals=(("run_id", run),),
                ends=(
                    EndCondition("run_id", run, frozenset({"run.completed"})),
                    EndCondition("task_id", task, frozenset({"task.completed"})),
                ),
            ),
            ping=False,
        ),
        "feed": fanout.subscribe(StreamSpec(alice), ping=False),
        "tasks feed": fanout.subscribe(StreamSpec(alice, present=("task_id",)), ping=False),
        "bob's feed": fanout.subscribe(StreamSpec(bob), ping=False),
    }
    fanout._dispatch(
        [
            _event(1, "task.output.delta", alice, task_id=task),
            _event(2, "run.step", alice, run_id=run, task_id=task),
            _event(3, "note", alice),
            _event(4, "task.completed", alice, task_id=task),
            _event(5, "task.started", bob, task_id=task),
        ]
    )
    received = {name: [event.id for event in stream.take()] for name, stream in streams.items()}
    assert received == {
        "task": [1, 2, 4],
        "task, output only": [1, 4],  # 4 ends it, whatever its types
        "other task": [],
        "run of task": [2, 4],
        "feed": [1, 2, 3, 4],
        "tasks feed": [1, 2, 4],
        "bob's feed": [5],
    }


async def test_a_subject_nobody_follows_any_more_is_forgotten(
    settings: Settings, db: Database
) -> None:
    fanout = _fanout(settings, db)
    alice = uuid.uuid4()
    tasks = [uuid.uuid4() for _ in range(3)]
    first = [fanout.subscribe(_task_spec(alice, task), ping=False) for task in tasks]
    second = fanout.subscribe(_task_spec(alice, tasks[0]), ping=False)
    for subscriber in first:
        fanout.unsubscribe(subscriber)
    fanout.unsubscribe(first[0])  # twice: a no-op
    assert fanout.subscriber_count == 1
    fanout._dispatch([_event(1, "task.progress", alice, task_id=tasks[0])])
    assert [event.id for event in second.take()] == [1]
    fanout.unsubscribe(second)
    assert fanout.subscriber_count == 0
    # Nothing left behind per subject: a long-lived process follows many short-lived tasks.
    assert fanout._routes == {}
    assert fanout._members == {}
