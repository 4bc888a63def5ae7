"""A running job's handler is interrupted once, however often it is stopped: what it records
while winding down (a task's cancellation) is not cut short."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from taskgate.runtime.context import JobContext
from taskgate.runtime.outcomes import Running, StopReason


async def test_a_handler_winding_down_is_not_interrupted_again() -> None:
    started, winding_down, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    recorded: list[str] = []

    async def handler() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:

            async def record() -> None:
                await release.wait()
                recorded.append("cancelled")

            winding_down.set()
            await asyncio.shield(record())
            recorded.append("handler went on")
            raise

    # The stop and timeout paths never touch the job's context.
    running = Running(cast(JobContext, None), asyncio.ensure_future(handler()), timeout=60)
    await started.wait()
    running.stop(StopReason.CANCEL)
    await winding_down.wait()
    running.stop(StopReason.CANCEL)  # the same cancel heard again, by NOTIFY
    running.time_out()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await running.task
    assert recorded == ["cancelled", "handler went on"]
    assert running.stop_reason is StopReason.CANCEL
