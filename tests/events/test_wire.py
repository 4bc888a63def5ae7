"""What streams send: the EventOut contract, SSE framing, the types filter."""

from __future__ import annotations

import json
import uuid

import pytest

from taskgate.clock import utcnow
from taskgate.errors import ValidationFailed
from taskgate.events.filters import TypeFilter
from taskgate.events.schemas import EventOut
from taskgate.events.wire import EventRecord


def test_stream_json_is_the_event_out_contract() -> None:
    record = EventRecord(
        42,
        "task.output.delta",
        uuid.uuid4(),
        utcnow(),
        {"text": "héllo\nworld", "n": [1, 2]},
        task_id=uuid.uuid4(),
        workflow_id=uuid.uuid4(),
    )
    assert json.loads(record.json) == EventOut.model_validate(record).model_dump(mode="json")


def test_sse_frame_is_one_event_even_with_line_breaks() -> None:
    record = EventRecord(7, "user.posted\nevent: forged", None, utcnow(), {"text": "a\n\nb"})
    frame = record.sse.decode()
    assert frame.endswith("\n\n")
    assert frame.count("\n\n") == 1
    lines = frame.strip("\n").split("\n")
    assert lines[0] == "id: 7"
    assert lines[1] == "event: user.posted event: forged"
    assert json.loads(lines[2].removeprefix("data: "))["payload"] == {"text": "a\n\nb"}


def test_types_filter_exact_and_prefix() -> None:
    types = TypeFilter.parse(" task.* , job.completed ")
    assert types is not None
    assert types.matches("task.created")
    assert types.matches("task.output.delta")
    assert types.matches("job.completed")
    assert not types.matches("job.failed")
    assert not types.matches("tasks.created")
    assert TypeFilter.parse("*") is None
    assert TypeFilter.parse("") is None


@pytest.mark.parametrize("raw", ["task.**", "a b", "task*", ".task", "x" * 101])
def test_types_filter_rejects_nonsense(raw: str) -> None:
    with pytest.raises(ValidationFailed):
        TypeFilter.parse(raw)
