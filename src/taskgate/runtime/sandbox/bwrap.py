"""The bubblewrap backend: the process backend's limits, inside new namespaces and a private,
read-only root where only the work dir is writable."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

from taskgate.runtime.sandbox.base import (
    NOBODY,
    SANDBOX_TMP,
    OutputCallback,
    RunAs,
    SandboxError,
    SandboxRequest,
    SandboxResult,
    SandboxUnavailable,
    sandbox_env,
    script_text,
)
from taskgate.runtime.sandbox.process import (
    KILL_GRACE_SECONDS,
    find_program,
    kill_group,
    memfd,
    prepare_work_dir,
    reachable_by,
    run_launch,
)
from taskgate.runtime.sandbox.spawn import Launch, popen_arguments
from taskgate.runtime.sandbox.uids import UidPool, resolve_identity, run_as_of

WORK_MOUNT = "/work"
SCRIPT_DIR = "/run/taskgate"
HOSTNAME = "taskgate"
SANDBOX_SHM = "/dev/shm"  # noqa: S108 - a private tmpfs inside the sandbox
PROBE_TIMEOUT_SECONDS = 10.0
REACHABLE_MOUNT = Path("/run/taskgate/work")
"""Where a work dir the sandbox's uid cannot reach is bound, in a mount namespace per run."""
INSTALL_HINT = (
    "bubblewrap (bwrap) is not installed, so script and command tasks cannot run. Install it "
    "(apt-get install bubblewrap; dnf install bubblewrap) and restart, or set "
    "TASKGATE_SANDBOX__BACKEND=process to run them without isolation."
)
_ROOT_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_ETC = (
    "alternatives",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "crypto-policies",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "nsswitch.conf",
    "hosts",
    "host.conf",
    "gai.conf",
    "services",
    "protocols",
    "mime.types",
)


class BwrapSandbox:
    name = "bwrap"
    isolated = True

    def __init__(
        self,
        bwrap: str | None = None,
        *,
        run_as: RunAs | UidPool | Literal["auto"] | None = "auto",
    ) -> None:
        path = bwrap or shutil.which("bwrap")
        if path is None:
            raise SandboxUnavailable(INSTALL_HINT)
        self.bwrap = path
        self.identity = resolve_identity(run_as)
        usage = _help(path)
        # Both are recent (0.8, 0.7); without them the sandbox is a little less tight.
        self._disable_userns = "--disable-userns" in usage
        self._sized_tmpfs = "--size " in usage

    async def run(
        self, request: SandboxRequest, on_output: OutputCallback | None = None
    ) -> SandboxResult:
        with run_as_of(self.identity) as run_as:
            work_dir = prepare_work_dir(request.work_dir, run_as, reachable=False)
            launch = self.launch(request, work_dir, run_as)
            return await run_launch(launch, request, run_as, on_output)

    def probe(self) -> str | None:
        """Run a trivial script the way ``run`` would, but synchronously. Returns why that
        failed, or None when this sandbox works on this host."""
        with tempfile.TemporaryDirectory(prefix="taskgate-probe-") as tmp:
            Path(tmp).chmod(0o711)  # let the sandbox uid reach the work dir inside
            request = SandboxRequest(kind="bash", content=": > probe", work_dir=Path(tmp, "work"))
            try:
                with run_as_of(self.identity) as run_as:
                    work_dir = prepare_work_dir(request.work_dir, run_as)
                    launch = self.launch(request, work_dir, run_as)
                    with launch:
                        argv, options = popen_arguments(launch, request.limits, run_as)
                        done = subprocess.run(
                            argv,
                            capture_output=True,
                            timeout=PROBE_TIMEOUT_SECONDS,
                            check=False,
                            **options,
                        )
            except (OSError, subprocess.SubprocessError, SandboxError) as exc:
                return f"{type(exc).__name__}: {exc}"
        if done.returncode != 0:
            stderr = done.stderr.decode(errors="replace").strip()
            return f"trial run exited with {done.returncode}: {stderr}"
        return None

    def launch(self, request: SandboxRequest, work_dir: Path, run_as: RunAs | None) -> Launch:
        python = request.kind == "python"
        program = find_program("python3" if python else "bash")
        script = f"{SCRIPT_DIR}/script.py" if python else f"{SCRIPT_DIR}/script.sh"
        uid, gid = _ids(run_as)
        launch = _BwrapLaunch([], {}, Path("/"))
        try:
            options = self._namespaces(request.network)
            options += _system_mounts(launch, request.network)
            options += _scratch_mounts(request.limits.memory_bytes if self._sized_tmpfs else None)
            options += _sandbox_files(launch, request, uid, gid, script)
            options += ["--bind", self._bind_source(launch, work_dir, run_as), WORK_MOUNT]
            options += ["--chdir", WORK_MOUNT]
            options += ["--remount-ro", "/dev", "--remount-ro", "/", "--clearenv"]
            for name, value in sandbox_env(WORK_MOUNT, request.env).items():
                options += ["--setenv", name, value]
            # Through a file rather than argv: argv is world-readable in /proc, env may be secret.
            args = launch.inherit(memfd("args", b"".join(f"{o}\0".encode() for o in options)))
        except BaseException:
            launch.close()
            raise
        launch.argv = [self.bwrap, "--args", str(args), "--", program, script]
        return launch

    def _bind_source(self, launch: Launch, work_dir: Path, run_as: RunAs | None) -> str:
        """The path bwrap binds on /work. bwrap runs as the sandbox's uid and resolves it as
        that uid: a work dir under a private directory (a 0700 home, ``mktemp -d``) is first
        bound, by a bwrap run as the worker in a mount namespace of the run's own, on a
        directory anyone may traverse."""
        if reachable_by(work_dir, run_as):
            return str(work_dir)
        REACHABLE_MOUNT.mkdir(mode=0o755, parents=True, exist_ok=True)
        launch.privileged_prefix = [
            *(self.bwrap, "--dev-bind", "/", "/", "--bind", str(work_dir), str(REACHABLE_MOUNT)),
            *("--die-with-parent", "--"),
        ]
        return str(REACHABLE_MOUNT)

    def _namespaces(self, network: bool) -> list[str]:
        options = ["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"]
        options += ["--cap-drop", "ALL", "--hostname", HOSTNAME]
        if self._disable_userns:
            options.append("--disable-userns")
        if network:
            options.append("--share-net")
        return options


class _BwrapLaunch(Launch):
    status_fd = -1
    _status: dict[str, int] | None = None
    _exit_code: int | None = None
    _unread = b""

    def failure(self) -> str | None:
        """bwrap reports the command's ``exit-code`` on its status fd only once it has exec'd
        the command (since 0.3.2, the command's exec closes a pipe bwrap watches). Without it,
        bwrap failed on its own (creating namespaces, forking, mounting, exec) and the exit
        status is bwrap's, not the user's."""
        self._read_status()
        return None if self._exit_code is not None else "bwrap failed to start the sandbox"

    def stop(self, pid: int) -> None:
        """Kill the sandbox's init: the kernel then kills everything else in its PID namespace
        and bwrap reaps it. Killing bwrap's process group instead would orphan that init."""
        init = self._open_init()
        if init is None:
            kill_group(pid)
            return
        try:
            signal.pidfd_send_signal(init, signal.SIGKILL)
        finally:
            os.close(init)

    async def settle(self) -> None:
        """Wait until the sandbox's init has exited. bwrap may exit first, but the kernel only
        lets that init exit once every other process of its namespace is dead and reaped."""
        init = self._open_init()
        if init is None:
            return
        try:
            await _readable(init, KILL_GRACE_SECONDS)
        finally:
            os.close(init)

    def _open_init(self) -> int | None:
        """A pidfd for the sandbox's init, or None when it is gone or bwrap has not told yet."""
        status = self._read_status()
        if status is None:
            return None
        pid = status["child-pid"]
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return None
        try:
            # The pid could have been reused by now; the init is the one in the sandbox's PID
            # namespace (which dies with it).
            if os.stat(f"/proc/{pid}/ns/pid").st_ino == status["pid-namespace"]:
                return pidfd
        except OSError:
            pass
        os.close(pidfd)
        return None

    def _read_status(self) -> dict[str, int] | None:
        """The child-pid line (bwrap writes it right after starting the init); reads whatever
        else is there, keeping the exit-code line bwrap writes once the command has exited."""
        while self._exit_code is None:
            try:
                data = os.read(self.status_fd, 65536)
            except OSError:
                break
            if not data:
                break
            *lines, self._unread = (self._unread + data).split(b"\n")
            for line in lines:
                try:
                    status = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(status, dict):
                    continue
                if "child-pid" in status and self._status is None:
                    self._status = status
                if isinstance(status.get("exit-code"), int):
                    self._exit_code = status["exit-code"]
        return self._status


async def _readable(fd: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await asyncio.wait({ready}, timeout=timeout)
    finally:
        loop.remove_reader(fd)


def _sandbox_files(
    launch: _BwrapLaunch, request: SandboxRequest, uid: int, gid: int, script: str
) -> list[str]:
    passwd, group = _identity(uid, gid)
    status_read, status_write = os.pipe()
    launch.own(status_read)
    launch.inherit(status_write)
    os.set_blocking(status_read, False)
    launch.status_fd = status_read
    files = {
        "/etc/passwd": launch.inherit(memfd("passwd", passwd)),
        "/etc/group": launch.inherit(memfd("group", group)),
        script: launch.inherit(memfd("script", script_text(request).encode())),
    }
    options = ["--json-status-fd", str(status_write)]
    for path, fd in files.items():
        options += ["--file", str(fd), path]
    return options


def _system_mounts(launch: Launch, network: bool) -> list[str]:
    """/usr, the root-level links or dirs into it, and a few /etc entries, all read-only.
    Nothing else of the host exists inside."""
    mounts = ["--ro-bind", "/usr", "/usr"]
    for name in _ROOT_DIRS:
        host = Path("/", name)
        if host.is_symlink():
            mounts += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            mounts += ["--ro-bind", str(host), str(host)]
    etc = [*_ETC, *sorted(path.name for path in Path("/etc").glob("python3*"))]
    if network:
        etc.append("resolv.conf")
    for name in etc:
        mounts += _etc_entry(launch, f"/etc/{name}")
    return mounts


def _etc_entry(launch: Launch, path: str) -> list[str]:
    """A world-readable file is copied, as it is now, into the sandbox's root (read-only like
    the rest of it): bwrap makes a bind mount, its read-only remount and a fresh read of the
    mount table for each bound path, which add up to milliseconds. Anything else is bound,
    keeping its permissions; a missing path is left out."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        return []
    except OSError:
        return ["--ro-bind-try", path, path]
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode) and mode & stat.S_IROTH:
        return ["--file", str(launch.inherit(fd)), path]
    os.close(fd)
    return ["--ro-bind-try", path, path]


def _scratch_mounts(size: int | None) -> list[str]:
    """Fresh /proc and /dev; /tmp and /dev/shm as tmpfs of at most ``size`` bytes, since tmpfs
    is RAM that no rlimit accounts for."""
    sized = ["--size", str(size)] if size else []
    tmpfs = [*sized, "--tmpfs", SANDBOX_TMP, *sized, "--tmpfs", SANDBOX_SHM]
    return ["--proc", "/proc", "--dev", "/dev", *tmpfs]


def _ids(run_as: RunAs | None) -> tuple[int, int]:
    return (run_as.uid, run_as.gid) if run_as else (os.geteuid(), os.getegid())


def _identity(uid: int, gid: int) -> tuple[bytes, bytes]:
    users = [f"sandbox:x:{uid}:{gid}:taskgate sandbox:{WORK_MOUNT}:/bin/bash"]
    groups = [f"sandbox:x:{gid}:"]
    if uid != NOBODY:
        users.append(f"nobody:x:{NOBODY}:{NOBODY}:nobody:/nonexistent:/usr/sbin/nologin")
    if gid != NOBODY:
        groups.append(f"nogroup:x:{NOBODY}:")
    return "".join(f"{u}\n" for u in users).encode(), "".join(f"{g}\n" for g in groups).encode()


def _help(bwrap: str) -> str:
    try:
        done = subprocess.run(
            [bwrap, "--help"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxError(f"cannot run {bwrap}: {exc}") from exc
    return done.stdout + done.stderr
