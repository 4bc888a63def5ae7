"""The sandbox contract (what to run, within which limits, what came out) and output capture."""

from __future__ import annotations

import asyncio
import ctypes
import functools
import itertools
import os
import resource
import shlex
import signal
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

import structlog

Kind = Literal["bash", "python", "commands"]
Outcome = Literal["exited", "timeout", "cancelled", "killed"]
OutputCallback = Callable[[str, bytes], Awaitable[None]]
"""Receives (``"stdout"`` or ``"stderr"``, chunk of at most 8 KiB) for the first
``output_cap_bytes`` of output, in the order it was produced."""

MIB = 1024 * 1024
CHUNK_BYTES = 8 * 1024
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
NOBODY = 65534
SANDBOX_TMP = "/tmp"  # noqa: S108 - a private tmpfs under bwrap
_LAST_SIGNAL = 64
_PR_SET_PDEATHSIG = 1

_log = structlog.get_logger(__name__)


class SandboxError(Exception):
    """The sandbox could not be set up, so nothing of the request ran. Often passing (the
    host short of processes or memory): worth another try."""


class SandboxUnavailable(SandboxError):
    """No sandbox can run here (bubblewrap is missing or does not work): user code must not
    run at all until an operator installs it or chooses the process backend."""


@dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: int = 60
    memory_bytes: int = 512 * MIB
    max_processes: int = 128
    """Counts every process of the sandbox's uid on the host, bwrap's two helpers included:
    one sandbox's alone when each run leases a uid of its own (see ``uids``)."""
    file_size_bytes: int = 64 * MIB
    wall_timeout_seconds: float = 300.0
    output_cap_bytes: int = 1 * MIB
    """Output kept in the excerpt and streamed to the callback."""
    output_file_cap_bytes: int = 64 * MIB
    """Output kept in the full output file; the rest is only counted."""

    def __post_init__(self) -> None:
        for limit in fields(self):
            if getattr(self, limit.name) <= 0:
                raise ValueError(f"{limit.name} must be positive")


@dataclass(frozen=True, kw_only=True)
class SandboxRequest:
    kind: Kind
    content: str = ""
    commands: Sequence[str] = ()
    """For kind "commands": run in order in one shell, stopping at the first failure."""
    work_dir: Path
    """The only writable host path; created if missing and handed to the sandbox uid."""
    env: Mapping[str, str] = field(default_factory=dict)
    network: bool = False
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    output_path: Path | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("bash", "python", "commands"):
            raise ValueError(f"unknown kind {self.kind!r}")
        if isinstance(self.commands, str):
            raise TypeError("commands must be a sequence of strings, not a string")
        for name, value in self.env.items():
            if not name or "=" in name or "\0" in name or "\0" in value:
                raise ValueError(f"invalid environment variable {name!r}")
        if "\0" in self.content or any("\0" in command for command in self.commands):
            raise ValueError("scripts and commands cannot contain NUL bytes")


@dataclass(frozen=True)
class SandboxResult:
    """What happened. A death by signal N is reported the shell way, as exit code 128 + N with
    outcome "killed", by both backends (bwrap and bash cannot report it any other way).
    ``run`` never returns "cancelled": cancelling it raises CancelledError once the sandbox is
    dead; the value is for callers recording such a run."""

    exit_code: int | None
    outcome: Outcome
    signal: int | None
    duration_seconds: float
    output_excerpt: str
    output_truncated: bool
    output_bytes: int
    output_path: Path | None


class Sandbox(Protocol):
    name: str
    isolated: bool

    async def run(
        self, request: SandboxRequest, on_output: OutputCallback | None = None
    ) -> SandboxResult: ...


@dataclass(frozen=True)
class RunAs:
    """The host uid/gid the sandboxed processes run as."""

    uid: int
    gid: int


def rlimits(limits: SandboxLimits) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) for every rlimit the sandbox runs under."""
    return [
        _clamped(resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1),
        _clamped(resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        _clamped(resource.RLIMIT_NPROC, limits.max_processes, limits.max_processes),
        _clamped(resource.RLIMIT_FSIZE, limits.file_size_bytes, limits.file_size_bytes),
        (resource.RLIMIT_CORE, 0, 0),
    ]


def child_setup(limits: SandboxLimits, run_as: RunAs | None = None) -> Callable[[], None]:
    """The preexec_fn, where setpriv and prlimit are missing: rlimits, the uid drop, then the
    parent-death signal (a uid change resets it, so it comes last). It only calls into C with
    values computed beforehand."""
    limited = rlimits(limits)
    prctl = _libc().prctl
    worker = os.getpid()

    def setup() -> None:
        for which, soft, hard in limited:
            resource.setrlimit(which, (soft, hard))
        if run_as is not None:
            os.setgroups([])
            os.setgid(run_as.gid)
            os.setuid(run_as.uid)
        # A dead worker can no longer enforce the wall timeout: take the sandbox down with it.
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != worker:
            raise RuntimeError("the worker exited while the sandbox was starting")

    return setup


def _clamped(which: int, soft: int, hard: int) -> tuple[int, int, int]:
    """Stay within the worker's own hard limit: raising it would make setrlimit fail."""
    _, current = resource.getrlimit(which)
    if current != resource.RLIM_INFINITY:
        hard = min(hard, current)
        soft = min(soft, hard)
    return which, soft, hard


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def sandbox_env(home: str, extra: Mapping[str, str]) -> dict[str, str]:
    return {"PATH": SAFE_PATH, "HOME": home, "LANG": "C.UTF-8", "TMPDIR": SANDBOX_TMP, **extra}


def script_text(request: SandboxRequest) -> str:
    if request.kind == "commands":
        return commands_script(request.commands)
    return request.content


def commands_script(commands: Sequence[str]) -> str:
    """A bash script echoing each command as ``$ cmd`` before running it, stopping at the first
    failure. ``eval`` keeps a syntax error in one command from swallowing the next ones."""
    lines = ["set -e"]
    for command in commands:
        lines.append(f"printf '%s\\n' {shlex.quote('$ ' + command)}")
        lines.append(f"eval {shlex.quote(command)}")
    return "\n".join(lines) + "\n"


def exit_result(
    returncode: int, duration: float, capture: OutputCapture, output_path: Path | None
) -> SandboxResult:
    outcome: Outcome = "exited"
    exit_code, signal = returncode, None
    if returncode < 0:
        outcome, exit_code, signal = "killed", 128 - returncode, -returncode
    elif 128 < returncode <= 128 + _LAST_SIGNAL:
        outcome, signal = "killed", returncode - 128
    return capture.result(exit_code, outcome, signal, duration, output_path)


class OutputCapture:
    """Combined stdout and stderr: all of it counted, the first ``output_file_cap_bytes`` kept in
    the output file, the first ``output_cap_bytes`` kept as the excerpt and streamed."""

    def __init__(self, limits: SandboxLimits, path: Path | None, streaming: bool) -> None:
        self.total = 0
        self._cap = limits.output_cap_bytes
        self._file_room = limits.output_file_cap_bytes
        self._excerpt = bytearray()
        self._file = _open_output(path)
        self._streaming = streaming
        self._pending: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()

    def __enter__(self) -> OutputCapture:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def feed(self, stream: str, data: bytes) -> None:
        self.total += len(data)
        self._write_file(data)
        room = self._cap - len(self._excerpt)
        if room > 0:
            head = data[:room]
            self._excerpt += head
            if self._streaming:
                self._pending.put_nowait((stream, head))

    def finish(self) -> None:
        """No more output will come: let ``forward`` return once it has delivered the rest."""
        self._pending.put_nowait(None)

    async def forward(self, on_output: OutputCallback) -> None:
        while True:
            batch = [await self._pending.get()]
            while not self._pending.empty():
                batch.append(self._pending.get_nowait())
            for stream, chunk in coalesce(item for item in batch if item is not None):
                await on_output(stream, chunk)
            if batch[-1] is None:
                return

    def result(
        self,
        exit_code: int | None,
        outcome: Outcome,
        signal: int | None,
        duration: float,
        output_path: Path | None,
    ) -> SandboxResult:
        return SandboxResult(
            exit_code=exit_code,
            outcome=outcome,
            signal=signal,
            duration_seconds=duration,
            output_excerpt=self._excerpt.decode("utf-8", errors="replace"),
            output_truncated=self.total > self._cap,
            output_bytes=self.total,
            output_path=output_path,
        )

    def _write_file(self, data: bytes) -> None:
        if self._file is None or self._file_room <= 0:
            return
        piece = data[: self._file_room]
        try:
            self._file.write(piece)
        except OSError as exc:
            _log.warning("sandbox.output_file_failed", error=str(exc))
            self._file.close()
            self._file = None
            return
        self._file_room -= len(piece)


def coalesce(chunks: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, bytes]]:
    """Merge consecutive chunks of one stream, then cut them into pieces of CHUNK_BYTES."""
    for stream, group in itertools.groupby(chunks, key=lambda item: item[0]):
        data = b"".join(chunk for _, chunk in group)
        for start in range(0, len(data), CHUNK_BYTES):
            yield stream, data[start : start + CHUNK_BYTES]


def _open_output(path: Path | None) -> BinaryIO | None:
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "wb")
