"""Starting the sandbox's first process cheaply, and following it from the running event loop.

A worker is a large process, and forking it copies its page tables: some 20 ms at 200 MB of
resident memory, on every task. A ``preexec_fn`` forces that fork, and uvloop's subprocess
support forks with or without one. So the uid drop, the rlimits and the parent-death signal are
applied by util-linux's ``setpriv`` and ``prlimit``, exec'd in front of the command;
``subprocess.Popen``, given no preexec_fn, user or group, then starts the chain with vfork; and
the loop (asyncio's or uvloop's alike) watches the output pipes and a pidfd. Where those tools
are missing, a ``preexec_fn`` does the same work for the price of a fork.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from taskgate.runtime.sandbox.base import (
    OutputCapture,
    RunAs,
    SandboxError,
    SandboxLimits,
    child_setup,
    rlimits,
)

TOOL_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
_PRLIMIT_OPTIONS = {
    resource.RLIMIT_CPU: "--cpu",
    resource.RLIMIT_AS: "--as",
    resource.RLIMIT_NPROC: "--nproc",
    resource.RLIMIT_FSIZE: "--fsize",
    resource.RLIMIT_CORE: "--core",
}


class Launch:
    """What a backend starts: argv, environment, cwd, and the fds it owns until the run ends."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.pass_fds: list[int] = []
        self.privileged_prefix: list[str] = []
        """Run as the worker (root) in front of the uid drop and the limits, e.g. to mount."""
        self._owned: list[int] = []

    def __enter__(self) -> Launch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def own(self, fd: int) -> int:
        self._owned.append(fd)
        return fd

    def inherit(self, fd: int) -> int:
        """Own ``fd`` and pass it to the child under the same number."""
        self.pass_fds.append(self.own(fd))
        return fd

    def close(self) -> None:
        for fd in self._owned:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._owned.clear()
        self.pass_fds.clear()

    def stop(self, pid: int) -> None:
        """SIGKILL everything started from ``pid``, the direct child."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)

    async def settle(self) -> None:
        """Wait, after the direct child is gone, until nothing else of the run is left."""

    def failure(self) -> str | None:
        """Why the backend itself failed before the user's program ran (its exit status is
        then the backend's, not the user's); None when the program ran."""
        return None


@functools.cache
def confining_tools() -> tuple[str, str] | None:
    """setpriv and prlimit, when both are installed and setpriv knows ``--pdeathsig``
    (util-linux 2.33 and later)."""
    setpriv = shutil.which("setpriv", path=TOOL_PATH)
    prlimit = shutil.which("prlimit", path=TOOL_PATH)
    if setpriv is None or prlimit is None:
        return None
    try:
        usage = subprocess.run(
            [setpriv, "--help"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return (setpriv, prlimit) if "--pdeathsig" in usage else None


def popen_arguments(
    launch: Launch, limits: SandboxLimits, run_as: RunAs | None
) -> tuple[list[str], dict[str, Any]]:
    """The argv and Popen keyword arguments that start ``launch`` in a session of its own, with
    its environment only, as ``run_as``, within ``limits``, and killed if the worker dies."""
    options: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "env": launch.env,
        "cwd": launch.cwd,
        "pass_fds": tuple(launch.pass_fds),
        "start_new_session": True,
    }
    tools = confining_tools()
    if tools is None:
        if launch.privileged_prefix:
            raise SandboxError("setpriv and prlimit (util-linux 2.33 or later) are needed here")
        return launch.argv, {**options, "preexec_fn": child_setup(limits, run_as)}
    setpriv, prlimit = tools
    ids = [f"--reuid={run_as.uid}", f"--regid={run_as.gid}", "--clear-groups"] if run_as else []
    caps = [f"{_PRLIMIT_OPTIONS[which]}={soft}:{hard}" for which, soft, hard in rlimits(limits)]
    # setpriv sets the parent-death signal after the uid change, which would reset it, and
    # it survives the execs that follow (none is setuid). bwrap's --die-with-parent then
    # passes it on inside. Unlike the preexec_fn, nothing checks that the worker is still
    # there by then: a worker killed within that millisecond leaves a sandbox that only its
    # CPU limit ends.
    argv = [setpriv, *ids, "--pdeathsig=KILL", "--", prlimit, *caps, "--", *launch.argv]
    argv[:0] = launch.privileged_prefix
    return argv, options


async def start(
    launch: Launch, limits: SandboxLimits, run_as: RunAs | None, capture: OutputCapture
) -> Child:
    """Start ``launch``; its stdout and stderr go to ``capture``."""
    child = Child(_popen(launch, limits, run_as), capture)
    try:
        await child.follow()
    except BaseException:
        child.close()
        raise
    return child


def _popen(launch: Launch, limits: SandboxLimits, run_as: RunAs | None) -> subprocess.Popen[bytes]:
    """Blocks the loop only until the child has exec'd setpriv: vfork suspends the caller until
    then, a fraction of a millisecond."""
    argv, options = popen_arguments(launch, limits, run_as)
    try:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxError(f"could not start {launch.argv[0]}: {exc}") from exc


class Child:
    """A started process. ``exited`` resolves once it has exited and been reaped, ``closed``
    once both of its output pipes have closed (which its own children can delay)."""

    def __init__(self, process: subprocess.Popen[bytes], capture: OutputCapture) -> None:
        self._loop = asyncio.get_running_loop()
        self._process = process
        self.capture = capture
        self.pid = process.pid
        self.exited: asyncio.Future[None] = self._loop.create_future()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._pipes: list[tuple[str, IO[bytes] | None]] = [
            ("stdout", process.stdout),
            ("stderr", process.stderr),
        ]
        self._transports: list[asyncio.BaseTransport] = []
        self._open_pipes = len(self._pipes)
        self._pidfd = -1

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def follow(self) -> None:
        # Not yet reaped, so the pid cannot have been reused: the pidfd is this process's.
        self._pidfd = os.pidfd_open(self.pid)
        self._loop.add_reader(self._pidfd, self._reap)
        while self._pipes:
            name, pipe = self._pipes[0]
            assert pipe is not None
            protocol = functools.partial(_Pipe, name, self.capture, self._pipe_closed)
            transport, _ = await self._loop.connect_read_pipe(protocol, pipe)
            self._pipes.pop(0)
            self._transports.append(transport)

    def close(self) -> None:
        """Stop reading its output. Still running (the run was abandoned), it is killed, and
        reaped once it is gone."""
        for transport in self._transports:
            transport.close()
        for _, pipe in self._pipes:
            if pipe is not None:
                pipe.close()
            self._pipe_closed()
        self._pipes.clear()
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            if self._pidfd < 0:  # never watched: nothing else will reap it
                self._process.wait()

    def _reap(self) -> None:
        if self._process.poll() is None:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        if not self.exited.done():
            self.exited.set_result(None)

    def _pipe_closed(self) -> None:
        self._open_pipes -= 1
        if self._open_pipes == 0 and not self.closed.done():
            self.closed.set_result(None)


class _Pipe(asyncio.Protocol):
    def __init__(self, name: str, capture: OutputCapture, on_closed: Callable[[], None]) -> None:
        self._name = name
        self._capture = capture
        self._on_closed = on_closed

    def data_received(self, data: bytes) -> None:
        self._capture.feed(self._name, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_closed()
