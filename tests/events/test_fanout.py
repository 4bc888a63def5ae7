"""The fan-out's index: an event meets only the streams of its project filed under a subject
it carries (or a feed), and a stream that ends with another subject's event still gets that."""

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


def _event(event_id: int, type: str, project: uuid.UUID, **subjects: uuid.UUID) -> EventRecord:
    # Whoever caused it: a stream follows a project, not a person.
    return EventRecord(event_id, type, uuid.uuid4(), utcnow(), {}, project_id=project, **subjects)


def _task_spec(project: uuid.UUID, task_id: uuid.UUID, types: str | None = None) -> StreamSpec:
    end = EndCondition("task_id", task_id, frozenset({"task.completed"}))
    return StreamSpec(
        project, equals=(("task_id", task_id),), types=TypeFilter.parse(types), ends=(end,)
    )


async def test_an_event_reaches_exactly_the_streams_that_want_it(
    settings: Settings, db: Database
) -> None:
    fanout = _fanout(settings, db)
    studio, lab = uuid.uuid4(), uuid.uuid4()
    task, other_task, run = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    streams = {
        "task": fanout.subscribe(_task_spec(studio, task), ping=False),
        "output only": fanout.subscribe(_task_spec(studio, task, "task.output.*"), ping=False),
        "other task": fanout.subscribe(_task_spec(studio, other_task), ping=False),
        "run of task": fanout.subscribe(
            StreamSpec(
                studio,
                equals=(("run_id", run),),
                ends=(
                    EndCondition("run_id", run, frozenset({"run.completed"})),
                    EndCondition("task_id", task, frozenset({"task.completed"})),
                ),
            ),
            ping=False,
        ),
        "feed": fanout.subscribe(StreamSpec(studio), ping=False),
        "tasks feed": fanout.subscribe(StreamSpec(studio, present=("task_id",)), ping=False),
        "the lab's feed": fanout.subscribe(StreamSpec(lab), ping=False),
    }
    fanout._dispatch(
        [
            _event(1, "task.output.delta", studio, task_id=task),
            _event(2, "run.step", studio, run_id=run, task_id=task),
            _event(3, "note", studio),
            _event(4, "task.completed", studio, task_id=task),
            _event(5, "task.started", lab, task_id=task),
            # The system's, in no project: no stream's.
            EventRecord(6, "node.started", None, utcnow(), {}, task_id=task),
        ]
    )
    received = {name: [event.id for event in stream.take()] for name, stream in streams.items()}
    assert received == {
        "task": [1, 2, 4],
        "output only": [1, 4],  # 4 ends it, whatever its types
        "other task": [],
        "run of task": [2, 4],
        "feed": [1, 2, 3, 4],
        "tasks feed": [1, 2, 4],
        "the lab's feed": [5],
    }


async def test_a_subject_nobody_follows_any_more_is_forgotten(
    settings: Settings, db: Database
) -> None:
    fanout = _fanout(settings, db)
    studio = uuid.uuid4()
    tasks = [uuid.uuid4() for _ in range(3)]
    first = [fanout.subscribe(_task_spec(studio, task), ping=False) for task in tasks]
    second = fanout.subscribe(_task_spec(studio, tasks[0]), ping=False)
    for subscriber in first:
        fanout.unsubscribe(subscriber)
    fanout.unsubscribe(first[0])  # twice: a no-op
    assert fanout.subscriber_count == 1
    fanout._dispatch([_event(1, "task.progress", studio, task_id=tasks[0])])
    assert [event.id for event in second.take()] == [1]
    fanout.unsubscribe(second)
    assert fanout.subscriber_count == 0
    # Nothing left behind per subject: a long-lived process follows many short-lived tasks.
    assert fanout._routes == {}
    assert fanout._members == {}
