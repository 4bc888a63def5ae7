"""What the sandbox tests share: markers, an output recorder, and a view of host processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskgate.runtime.sandbox import (
    SandboxRequest,
)

IS_ROOT = os.geteuid() == 0
needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None and os.environ.get("CI") != "true",
    reason="bwrap is not installed (under CI=true it must be)",
)
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root to run as another uid")
PF_EXITING = 0x4
MIB = 1024 * 1024


class Output:
    """An on_output callback that records what it gets and can signal a marker."""

    def __init__(self, marker: bytes = b"") -> None:
        self.chunks: list[tuple[str, bytes]] = []
        self.marker = marker
        self.seen = asyncio.Event()

    async def __call__(self, stream: str, chunk: bytes) -> None:
        self.chunks.append((stream, chunk))
        if self.marker and self.marker in b"".join(c for _, c in self.chunks):
            self.seen.set()

    def received(self, stream: str) -> bytes:
        return b"".join(chunk for name, chunk in self.chunks if name == stream)


def job(base: Path, content: str = "", **options: Any) -> SandboxRequest:
    options.setdefault("kind", "bash")
    return SandboxRequest(content=content, work_dir=base / "work", **options)


@dataclass(frozen=True)
class HostProcess:
    pid: int
    state: str
    doomed: bool
    """A zombie, exiting, or with a SIGKILL pending: it will not run user code again."""


def host_processes(*, uid: int | None = None, token: str | None = None) -> list[HostProcess]:
    """Processes on the host owned by ``uid`` and/or with ``token`` in their environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            lines = (entry / "status").read_text().splitlines()
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        status = {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}
        if uid is not None and int(status["Uid"].split()[0]) != uid:
            continue
        if token is not None and not _has_token(entry, token):
            continue
        pending = int(status["SigPnd"], 16) | int(status["ShdPnd"], 16)
        kill_pending = pending & (1 << (signal.SIGKILL - 1))
        doomed = stat[0] in "ZX" or bool(int(stat[6]) & PF_EXITING or kill_pending)
        found.append(HostProcess(int(entry.name), stat[0], doomed))
    return found


def live_processes(*, uid: int | None = None, token: str | None = None) -> list[int]:
    return [found.pid for found in host_processes(uid=uid, token=token) if not found.doomed]


def _has_token(process: Path, token: str) -> bool:
    try:
        return f"TOKEN={token}".encode() in (process / "environ").read_bytes()
    except OSError:  # its memory is gone: it is exiting
        return False
