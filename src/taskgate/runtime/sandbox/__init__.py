"""Where user scripts and commands run: bubblewrap, or plain processes when an operator says so.

Both backends apply the rlimits, the wall-clock timeout, the scrubbed environment, the uid drop
and the output caps; only bwrap isolates the filesystem, the network and the process tree. The
process backend is an explicit choice (``sandbox.backend = "process"``), never a fallback:
without bwrap, script and command tasks fail with SANDBOX_UNAVAILABLE instead of running.
"""

from __future__ import annotations

import shutil
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
    SandboxUnavailable,
)
from taskgate.runtime.sandbox.bwrap import INSTALL_HINT, BwrapSandbox
from taskgate.runtime.sandbox.process import ProcessSandbox
from taskgate.runtime.sandbox.uids import UidPool

__all__ = [
    "INSTALL_HINT",
    "BwrapSandbox",
    "OutputCallback",
    "ProcessSandbox",
    "RunAs",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "SandboxRequest",
    "SandboxResult",
    "SandboxUnavailable",
    "UidPool",
    "UnavailableSandbox",
    "missing_sandbox",
    "select_sandbox",
]

Backend = Literal["auto", "bwrap", "process"]


class UnavailableSandbox:
    """Stands in for bwrap where it is missing: every run is refused, nothing is executed."""

    name = "unavailable"
    isolated = False

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def run(
        self, request: SandboxRequest, on_output: OutputCallback | None = None
    ) -> SandboxResult:
        raise SandboxUnavailable(self.reason)


def missing_sandbox(preferred: Backend) -> str | None:
    """What an operator must do before sandboxed tasks can run here; None when nothing. Cheap:
    for the start banner."""
    if preferred == "process" or shutil.which("bwrap") is not None:
        return None
    return INSTALL_HINT


def select_sandbox(
    preferred: Backend = "auto", run_as: RunAs | UidPool | Literal["auto"] | None = "auto"
) -> Sandbox:
    """The sandbox to run user code in. "auto" and "bwrap" alike take bwrap, and without it a
    sandbox that refuses every run (SandboxUnavailable); only "process" runs user code without
    namespaces. A failing trial run is logged, not acted on: it may be passing (a host short of
    processes), and each run reports bwrap's own failures as SandboxError. Blocks for the
    trial run: call it once, at startup."""
    log = structlog.get_logger(__name__)
    if preferred == "process":
        log.warning("sandbox.unisolated", backend="process", reason="configured")
        return ProcessSandbox(run_as=run_as)
    try:
        sandbox = BwrapSandbox(run_as=run_as)
    except SandboxError as exc:
        log.error("sandbox.unavailable", backend=preferred, reason=str(exc))
        return UnavailableSandbox(str(exc))
    problem = sandbox.probe()
    if problem is not None:
        log.error("sandbox.probe_failed", backend="bwrap", problem=problem)
    return sandbox
