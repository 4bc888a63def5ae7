"""Waiting for something another task, thread or process does: poll until it holds."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def eventually(
    check: Callable[[], Any],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "the condition",
) -> Any:
    """Call ``check`` (sync or async) until it returns something truthy, and return that.

    Fails with ``what`` once ``timeout`` seconds have passed. Use it instead of a sleep:
    it waits only as long as the thing takes, and a deadline that passes is a failure."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)
