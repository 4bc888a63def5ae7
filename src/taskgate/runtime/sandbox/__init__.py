"""Where user scripts and commands run: bubblewrap when it works here, plain processes if not.

Both backends apply the rlimits, the wall-clock timeout, the scrubbed environment, the uid drop
and the output caps; only bwrap isolates the filesystem, the network and the process tree.
"""

from __future__ import annotations

from typing import Literal

import structlog

from taskgate.runtime.sandbox.base import (
    OutputCallback,
    RunAs,
    Sandbox,
    SandboxError,
    SandboxLimits,
    SandboxRequest,
    SandboxResult,
)
from taskgate.runtime.sandbox.bwrap import BwrapSandbox
from taskgate.runtime.sandbox.process import ProcessSandbox

__all__ = [
    "BwrapSandbox",
    "OutputCallback",
    "ProcessSandbox",
    "RunAs",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "SandboxRequest",
    "SandboxResult",
    "select_sandbox",
]


def select_sandbox(preferred: Literal["auto", "bwrap", "process"] = "auto") -> Sandbox:
    """The sandbox to run user code in. "auto" takes bwrap when it is installed and a trial run
    works, else falls back to the process backend with a warning; "bwrap" raises SandboxError
    instead of falling back. Blocks for the trial run: call it once, at startup."""
    log = structlog.get_logger(__name__)
    if preferred == "process":
        log.warning("sandbox.unisolated", backend="process", reason="configured")
        return ProcessSandbox()
    sandbox, problem = _working_bwrap()
    if sandbox is not None:
        return sandbox
    if preferred == "bwrap":
        raise SandboxError(f"the bwrap sandbox does not work here: {problem}")
    log.warning("sandbox.unisolated", backend="process", reason=problem)
    return ProcessSandbox()


def _working_bwrap() -> tuple[BwrapSandbox | None, str | None]:
    try:
        sandbox = BwrapSandbox()
    except SandboxError as exc:
        return None, str(exc)
    problem = sandbox.probe()
    return (sandbox, None) if problem is None else (None, problem)
