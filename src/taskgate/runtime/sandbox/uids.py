"""Host uids for sandboxes, one per running sandbox, leased across every process on the host.

The kernel counts RLIMIT_NPROC over all processes of a uid on the host, so sandboxes sharing a
uid share one process budget: concurrent sandboxes fail each other ("Creating new namespace
failed: Resource temporarily unavailable") and one fork bomb starves the rest. A uid of its own
gives each sandbox its own budget. Leases are flock'ed files, one per uid, in a directory
shared by every worker process on the host: the kernel releases a lease when its holder dies,
and a lease file still marked busy tells the next holder to kill what that holder left.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import structlog

from taskgate.runtime.sandbox.base import RunAs, SandboxError
from taskgate.settings import DEFAULT_FIRST_UID, DEFAULT_LEASE_DIR, DEFAULT_UID_COUNT

_log = structlog.get_logger(__name__)


class UidPool:
    """``count`` uids from ``first``; ``lease()`` hands out one no other sandbox on the host
    holds, and clears out any process a dead holder left under it."""

    def __init__(
        self,
        first: int = DEFAULT_FIRST_UID,
        count: int = DEFAULT_UID_COUNT,
        lease_dir: Path = DEFAULT_LEASE_DIR,
    ) -> None:
        if first <= 0 or count <= 0 or first + count > 2**32 - 2:
            raise ValueError("the sandbox uid range must be positive and below 2**32 - 2")
        self.first = first
        self.count = count
        self.lease_dir = lease_dir
        self._held: set[int] = set()
        self._ready = False

    @contextlib.contextmanager
    def lease(self) -> Iterator[RunAs]:
        """A uid (as uid and gid) for one sandbox run, free again when the block ends."""
        uid, fd = self._take()
        try:
            yield RunAs(uid, uid)
        finally:
            # Whatever ran as this uid has been killed and reaped: the next holder need not
            # look for leftovers.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)
            self._held.discard(uid)

    def sweep(self) -> int:
        """Kill what sandboxes of dead holders left behind, under every free uid marked busy.
        Returns how many uids were cleared."""
        self._prepare()
        cleared = 0
        for name in os.listdir(self.lease_dir):
            if not name.isdigit() or not self.first <= int(name) < self.first + self.count:
                continue
            uid = int(name)
            if uid in self._held:
                continue
            fd = self._try_lock(uid)
            if fd is None:
                continue
            try:
                if os.fstat(fd).st_size:
                    kill_uid(uid)
                    os.ftruncate(fd, 0)
                    cleared += 1
            finally:
                os.close(fd)
        return cleared

    def _take(self) -> tuple[int, int]:
        self._prepare()
        start = random.randrange(self.count)  # spreads processes over the range
        for step in range(self.count):
            uid = self.first + (start + step) % self.count
            if uid in self._held:
                continue
            fd = self._try_lock(uid)
            if fd is None:
                continue
            try:
                if os.fstat(fd).st_size:
                    kill_uid(uid)  # its last holder died with its sandbox running
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except BaseException:
                os.close(fd)
                raise
            self._held.add(uid)
            return uid, fd
        raise SandboxError(
            f"all {self.count} sandbox uids from {self.first} are in use on this host"
        )

    def _try_lock(self, uid: int) -> int | None:
        path = self.lease_dir / str(uid)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise SandboxError(f"cannot open the uid lease {path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise SandboxError(f"cannot lock the uid lease {path}: {exc}") from exc
        return fd

    def _prepare(self) -> None:
        """The lease directory, private to the worker's uid: anyone else able to create or lock
        files there could hold uids away from us, or point a lease at another file."""
        if self._ready:
            return
        try:
            self.lease_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.stat(self.lease_dir, follow_symlinks=False)
        except OSError as exc:
            raise SandboxError(f"cannot use {self.lease_dir} for uid leases: {exc}") from exc
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise SandboxError(
                f"{self.lease_dir} must belong to uid {os.geteuid()} and be writable by it alone"
            )
        self._ready = True


def kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` on the host (sandbox processes and their inits alike:
    killing a PID namespace's init takes the rest of it down)."""
    killed = 0
    for pid in _pids_of(uid):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            if _real_uid(pid) == uid:  # the pidfd pins this process: the pid was not reused
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                killed += 1
        except OSError:
            pass
        finally:
            os.close(pidfd)
    if killed:
        _log.warning("sandbox.leftovers_killed", uid=uid, processes=killed)


def _pids_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _real_uid(int(entry)) == uid:
            pids.append(int(entry))
    return pids


def _real_uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


Identity = RunAs | UidPool | None
"""Whom a backend runs sandboxes as: one uid, a uid leased per run, or the worker's own uid."""


def resolve_identity(run_as: RunAs | UidPool | Literal["auto"] | None) -> Identity:
    """With "auto", a uid per sandbox from the default pool when we are root (root ignores
    RLIMIT_NPROC, and sandboxes sharing a uid would share one process budget)."""
    if run_as != "auto":
        return run_as
    return UidPool() if os.geteuid() == 0 else None


@contextlib.contextmanager
def run_as_of(identity: Identity) -> Iterator[RunAs | None]:
    """The uid one run uses, held for as long as the block runs."""
    if isinstance(identity, UidPool):
        with identity.lease() as leased:
            yield leased
    else:
        yield identity
