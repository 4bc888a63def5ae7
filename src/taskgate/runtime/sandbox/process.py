"""Supervising and killing sandboxed processes on the host (shared by both backends; starting
them is in ``spawn``), and the process backend, which adds nothing else."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import stat
import time
from pathlib import Path
from typing import Literal

from taskgate.runtime.sandbox.base import (
    SAFE_PATH,
    OutputCallback,
    OutputCapture,
    RunAs,
    SandboxError,
    SandboxLimits,
    SandboxRequest,
    SandboxResult,
    exit_result,
    sandbox_env,
    script_text,
)
from taskgate.runtime.sandbox.spawn import Child, Launch, start
from taskgate.runtime.sandbox.uids import UidPool, resolve_identity, run_as_of

KILL_GRACE_SECONDS = 1.0
DRAIN_SECONDS = 2.0


class ProcessSandbox:
    """Plain host processes with the same limits, scrubbed environment, uid drop and cleanup as
    bwrap, but without namespaces: no filesystem or network isolation."""

    name = "process"
    isolated = False

    def __init__(self, *, run_as: RunAs | UidPool | Literal["auto"] | None = "auto") -> None:
        self.identity = resolve_identity(run_as)

    async def run(
        self, request: SandboxRequest, on_output: OutputCallback | None = None
    ) -> SandboxResult:
        with run_as_of(self.identity) as run_as:
            work_dir = prepare_work_dir(request.work_dir, run_as)
            launch = self.launch(request, work_dir)
            return await run_launch(launch, request, run_as, on_output)

    def launch(self, request: SandboxRequest, work_dir: Path) -> Launch:
        program = find_program("python3" if request.kind == "python" else "bash")
        env = sandbox_env(str(work_dir), request.env)
        launch = Launch([], env, work_dir)
        # The script goes through an fd rather than argv, which caps one argument at 128 KiB.
        script = launch.inherit(memfd("script", script_text(request).encode()))
        launch.argv = [program, f"/proc/self/fd/{script}"]
        return launch


async def run_launch(
    launch: Launch,
    request: SandboxRequest,
    run_as: RunAs | None,
    on_output: OutputCallback | None,
) -> SandboxResult:
    """Run ``launch`` to its end or its wall timeout, collecting the output. Cancelling the
    caller kills the sandbox, waits until it is reaped, then lets CancelledError through."""
    limits = request.limits
    with launch, OutputCapture(limits, request.output_path, on_output is not None) as capture:
        started = time.monotonic()
        child = await start(launch, limits, run_as, capture)
        forwarder = asyncio.create_task(capture.forward(on_output)) if on_output else None
        _running[child.pid] = launch
        try:
            timed_out = await _supervise(launch, child, forwarder, limits)
        finally:
            _running.pop(child.pid, None)
            child.close()
            if forwarder is not None:
                forwarder.cancel()
        duration = time.monotonic() - started
        if timed_out:
            return capture.result(None, "timeout", None, duration, request.output_path)
        if (problem := launch.failure()) is not None:
            said = capture.result(None, "exited", None, duration, None).output_excerpt.strip()
            raise SandboxError(f"{problem}: {said[-500:]}" if said else problem)
        returncode = child.returncode
        assert returncode is not None  # the process exited: _supervise waited for it
        return exit_result(returncode, duration, capture, request.output_path)


_running: dict[int, Launch] = {}
"""The sandboxes this process runs, by the pid of their first process."""


def kill_running_sandboxes() -> int:
    """SIGKILL every sandbox this process runs, whole trees included; for a process about to
    exit without waiting for its runs to end. Returns how many there were."""
    for pid, launch in list(_running.items()):
        launch.stop(pid)
        kill_group(pid)
    return len(_running)


# An interpreter that exits with runs still going (its loop abandoned) takes them along; the
# parent-death signal covers the exits that skip this, but leaves their zombies to the host.
atexit.register(kill_running_sandboxes)


async def _supervise(
    launch: Launch,
    child: Child,
    forwarder: asyncio.Task[None] | None,
    limits: SandboxLimits,
) -> bool:
    """Wait for the child to exit, kill it on timeout, cancellation or a failing callback, and
    drain its output. Returns whether the wall timeout expired."""
    try:
        timed_out = await _wait_for_exit(child.exited, forwarder, limits.wall_timeout_seconds)
    except BaseException:
        await _stop(launch, child)
        raise
    if timed_out:
        await _stop(launch, child)
    else:
        kill_group(child.pid)  # whatever the group leader left behind, e.g. background jobs
        await launch.settle()
    await _within(child.closed, DRAIN_SECONDS)
    child.capture.finish()
    if forwarder is not None:
        await forwarder
    return timed_out


async def _wait_for_exit(
    exited: asyncio.Future[None], forwarder: asyncio.Task[None] | None, timeout: float
) -> bool:
    waiters: set[asyncio.Future[None]] = {exited}
    if forwarder is not None:
        waiters.add(forwarder)
    done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if forwarder is not None and forwarder in done:
        forwarder.result()  # the forwarder only ends early when on_output raised: raise it here
    return not exited.done()


async def _stop(launch: Launch, child: Child) -> None:
    """Kill the sandbox and wait until its main process has been reaped."""
    launch.stop(child.pid)
    if not await _within(child.exited, KILL_GRACE_SECONDS):
        kill_group(child.pid)
        await _within(child.exited, KILL_GRACE_SECONDS)
    await launch.settle()


async def _within(future: asyncio.Future[None], seconds: float) -> bool:
    done, _ = await asyncio.wait({future}, timeout=seconds)
    return bool(done)


def prepare_work_dir(work_dir: Path, run_as: RunAs | None, *, reachable: bool = True) -> Path:
    """Create the work dir and give it to the sandbox uid. Unless ``reachable`` is False, fails
    early when that uid cannot reach it: HOME and the cwd are used as that uid."""
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir.resolve()
    if run_as is None:
        return path
    if path.stat().st_uid != run_as.uid:
        _give_to(path, run_as)
    path.chmod(0o700)
    if not reachable:
        return path
    for parent in path.parents:
        if not _searchable(parent.stat(), run_as):
            raise SandboxError(
                f"uid {run_as.uid} cannot reach the work dir {path}: {parent} is not searchable"
            )
    return path


def reachable_by(path: Path, run_as: RunAs | None) -> bool:
    """Whether ``run_as`` can traverse every parent of ``path``."""
    return run_as is None or all(_searchable(parent.stat(), run_as) for parent in path.parents)


def _give_to(path: Path, run_as: RunAs) -> None:
    """Hand the work dir and what earlier runs left in it to this run's uid (each run may lease
    another one). No sandbox of the task runs now, and symlinks are not followed."""
    os.chown(path, run_as.uid, run_as.gid)
    for _, dirs, files, dir_fd in os.fwalk(path, follow_symlinks=False):
        for name in (*dirs, *files):
            with contextlib.suppress(FileNotFoundError):
                os.chown(name, run_as.uid, run_as.gid, dir_fd=dir_fd, follow_symlinks=False)


def _searchable(st: os.stat_result, run_as: RunAs) -> bool:
    if st.st_uid == run_as.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == run_as.gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def find_program(name: str) -> str:
    """``/usr/bin/<name>`` when it exists, else ``<name>`` on the sandbox PATH; both are visible
    inside bwrap too."""
    preferred = Path("/usr/bin", name)
    if os.access(preferred, os.X_OK):
        return str(preferred)
    found = shutil.which(name, path=SAFE_PATH)
    if found is None:
        raise SandboxError(f"{name} is not installed")
    return found


def memfd(name: str, data: bytes) -> int:
    """An anonymous in-memory file holding ``data``, positioned at its start."""
    fd = os.memfd_create(f"taskgate-{name}")
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
