"""The sandbox against real bubblewrap and real processes: what user code can and cannot do."""

from __future__ import annotations

import asyncio
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from taskgate.runtime.sandbox import (
    BwrapSandbox,
    ProcessSandbox,
    RunAs,
    Sandbox,
    SandboxError,
    SandboxLimits,
    SandboxRequest,
    select_sandbox,
    spawn,
)

IS_ROOT = os.geteuid() == 0
needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None and os.environ.get("CI") != "true",
    reason="bwrap is not installed (under CI=true it must be)",
)
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root to run as another uid")
PF_EXITING = 0x4
MIB = 1024 * 1024
THIS_FILE = Path(__file__).resolve()


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


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """Scratch space the sandbox uid can traverse (pytest's tmp_path is 0700 under root)."""
    path = Path(tempfile.mkdtemp(prefix="taskgate-sandbox-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def run_as() -> RunAs | None:
    """A uid of its own for every test, so process counts and leftovers never mix."""
    if not IS_ROOT:
        return None
    uid = 200_000 + secrets.randbelow(1_000_000)
    return RunAs(uid, uid)


@pytest.fixture
def bwrap(run_as: RunAs | None) -> BwrapSandbox:
    return BwrapSandbox(run_as=run_as)


@pytest.fixture
def process(run_as: RunAs | None) -> ProcessSandbox:
    return ProcessSandbox(run_as=run_as)


@pytest.fixture(params=[pytest.param("bwrap", marks=needs_bwrap), "process"])
def sandbox(request: pytest.FixtureRequest, run_as: RunAs | None) -> Sandbox:
    if request.param == "bwrap":
        return BwrapSandbox(run_as=run_as)
    return ProcessSandbox(run_as=run_as)


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


async def test_runs_a_script_and_reports_its_output(sandbox: Sandbox, base_dir: Path) -> None:
    output = Output()
    out_file = base_dir / "output" / "full.log"
    result = await sandbox.run(
        job(base_dir, "echo hello\necho oops >&2\nexit 3", output_path=out_file), output
    )
    assert (result.outcome, result.exit_code, result.signal) == ("exited", 3, None)
    assert output.received("stdout") == b"hello\n"
    assert output.received("stderr") == b"oops\n"
    assert sorted(result.output_excerpt.splitlines()) == ["hello", "oops"]
    assert result.output_bytes == len(b"hello\noops\n")
    assert not result.output_truncated
    assert result.output_path == out_file
    assert out_file.read_text() == result.output_excerpt


async def test_commands_stop_at_the_first_failure(sandbox: Sandbox, base_dir: Path) -> None:
    commands = ["echo one", "mkdir sub && cd sub", "basename $(pwd)", "false", "echo two"]
    result = await sandbox.run(job(base_dir, kind="commands", commands=commands))
    assert result.exit_code == 1
    assert result.output_excerpt == (
        "$ echo one\none\n$ mkdir sub && cd sub\n$ basename $(pwd)\nsub\n$ false\n"
    )


async def test_python_runs_with_the_system_interpreter(
    sandbox: Sandbox, base_dir: Path, run_as: RunAs | None
) -> None:
    script = "import sys\nprint(sys.executable)\nopen('made.txt', 'w').write('made')"
    result = await sandbox.run(job(base_dir, script, kind="python"))
    assert result.exit_code == 0, result.output_excerpt
    assert result.output_excerpt == "/usr/bin/python3\n"
    made = base_dir / "work" / "made.txt"
    assert made.read_text() == "made"
    if run_as is not None:
        assert made.stat().st_uid == run_as.uid


async def test_environment_is_scrubbed(
    sandbox: Sandbox, base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKGATE_HOST_SECRET", "leaked")
    result = await sandbox.run(job(base_dir, "env", env={"GREETING": "hi"}))
    env = dict(line.split("=", 1) for line in result.output_excerpt.splitlines())
    assert "TASKGATE_HOST_SECRET" not in env
    assert env["GREETING"] == "hi"
    assert env["LANG"] == "C.UTF-8"
    assert env["TMPDIR"] == "/tmp"
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert env["HOME"] == env["PWD"]
    assert set(env) <= {"GREETING", "LANG", "TMPDIR", "PATH", "HOME", "PWD", "SHLVL", "_"}


async def test_wall_timeout_kills_the_whole_group(sandbox: Sandbox, base_dir: Path) -> None:
    token = secrets.token_hex(8)
    limits = SandboxLimits(wall_timeout_seconds=1)
    started = time.monotonic()
    result = await sandbox.run(
        job(base_dir, "sleep 30 &\nsleep 30", env={"TOKEN": token}, limits=limits)
    )
    assert time.monotonic() - started < 5
    assert (result.outcome, result.exit_code) == ("timeout", None)
    assert live_processes(token=token) == []


async def test_background_jobs_die_with_the_script(sandbox: Sandbox, base_dir: Path) -> None:
    token = secrets.token_hex(8)
    started = time.monotonic()
    result = await sandbox.run(job(base_dir, "sleep 30 &\necho started", env={"TOKEN": token}))
    assert time.monotonic() - started < 5
    assert (result.outcome, result.exit_code, result.output_excerpt) == ("exited", 0, "started\n")
    assert live_processes(token=token) == []


async def test_cancelling_kills_the_sandbox(sandbox: Sandbox, base_dir: Path) -> None:
    token = secrets.token_hex(8)
    output = Output(marker=b"ready")
    task = asyncio.create_task(
        sandbox.run(job(base_dir, "echo ready\nexec sleep 30", env={"TOKEN": token}), output)
    )
    await output.seen.wait()
    assert live_processes(token=token) != []
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled_at < 1
    assert live_processes(token=token) == []


async def test_a_failing_callback_fails_the_run(sandbox: Sandbox, base_dir: Path) -> None:
    token = secrets.token_hex(8)

    async def explode(stream: str, chunk: bytes) -> None:
        raise RuntimeError("consumer gone")

    with pytest.raises(RuntimeError, match="consumer gone"):
        await sandbox.run(job(base_dir, "echo hi\nsleep 30", env={"TOKEN": token}), explode)
    assert live_processes(token=token) == []


async def test_output_flood_is_capped(sandbox: Sandbox, base_dir: Path) -> None:
    output = Output()
    out_file = base_dir / "flood.log"
    limits = SandboxLimits(output_cap_bytes=64 * 1024, output_file_cap_bytes=MIB)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = await sandbox.run(
        job(base_dir, "head -c 200M /dev/zero", limits=limits, output_path=out_file), output
    )
    peak_growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert result.exit_code == 0
    assert result.output_bytes == 200 * MIB
    assert result.output_truncated
    assert len(result.output_excerpt) == 64 * 1024
    assert len(output.received("stdout")) == 64 * 1024
    assert max(len(chunk) for _, chunk in output.chunks) <= 8 * 1024
    assert out_file.stat().st_size == MIB
    assert peak_growth_kib < 64 * 1024


async def test_cpu_limit_kills(sandbox: Sandbox, base_dir: Path) -> None:
    limits = SandboxLimits(cpu_seconds=1)
    result = await sandbox.run(job(base_dir, "while True: pass", kind="python", limits=limits))
    assert (result.outcome, result.signal) == ("killed", signal.SIGXCPU)
    assert result.exit_code == 128 + signal.SIGXCPU


async def test_memory_limit_stops_a_hog(sandbox: Sandbox, base_dir: Path) -> None:
    limits = SandboxLimits(memory_bytes=256 * MIB)
    hog = "block = bytearray(2 * 1024**3)\nprint('allocated')"
    result = await sandbox.run(job(base_dir, hog, kind="python", limits=limits))
    assert result.exit_code != 0
    assert "MemoryError" in result.output_excerpt
    assert "allocated" not in result.output_excerpt


async def test_file_size_limit(sandbox: Sandbox, base_dir: Path) -> None:
    limits = SandboxLimits(file_size_bytes=MIB)
    result = await sandbox.run(job(base_dir, "head -c 2M /dev/zero > big", limits=limits))
    assert (result.outcome, result.signal) == ("killed", signal.SIGXFSZ)
    assert (base_dir / "work" / "big").stat().st_size == MIB


@pytest.mark.parametrize("confinement", ["setpriv and prlimit", "preexec_fn"])
async def test_limits_and_uid_apply_with_or_without_util_linux(
    sandbox: Sandbox,
    base_dir: Path,
    run_as: RunAs | None,
    confinement: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if confinement == "preexec_fn":
        monkeypatch.setattr(spawn, "confining_tools", lambda: None)
    elif spawn.confining_tools() is None:
        pytest.skip("setpriv or prlimit is not installed")
    limits = SandboxLimits(
        cpu_seconds=7, memory_bytes=300 * MIB, max_processes=20, file_size_bytes=3 * MIB
    )
    script = "id -u; ulimit -t; ulimit -v; ulimit -u; ulimit -f; ulimit -c"
    result = await sandbox.run(job(base_dir, script, limits=limits))
    uid = run_as.uid if run_as else os.geteuid()
    # bash reports -v and -f in KiB
    assert result.output_excerpt.split() == [str(uid), "7", "307200", "20", "3072", "0"]


_DOOMED_WORKER = """
import asyncio, sys
from pathlib import Path
from taskgate.runtime.sandbox import BwrapSandbox, ProcessSandbox, RunAs, SandboxRequest
backend, base, token, uid, script = sys.argv[1:]
run_as = RunAs(int(uid), int(uid)) if uid else None
sandbox = {"bwrap": BwrapSandbox, "process": ProcessSandbox}[backend](run_as=run_as)
work_dir = Path(base, "work")
request = SandboxRequest(kind="bash", content=script, work_dir=work_dir, env={"TOKEN": token})
asyncio.run(sandbox.run(request))
"""


def _within_seconds(seconds: float, condition: Any) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_sandbox_dies_with_its_worker(
    sandbox: Sandbox, base_dir: Path, run_as: RunAs | None
) -> None:
    token = secrets.token_hex(8)
    # Only bwrap takes the whole tree down (its PID namespace); the process backend, the
    # process it started.
    script = "sleep 30 &\nsleep 30" if sandbox.isolated else "exec sleep 30"
    uid = str(run_as.uid) if run_as else ""
    args = [sandbox.name, str(base_dir), token, uid, script]
    worker = subprocess.Popen([sys.executable, "-c", _DOOMED_WORKER, *args])
    try:
        assert _within_seconds(10, lambda: live_processes(token=token))
    finally:
        worker.kill()
        worker.wait()
    assert _within_seconds(5, lambda: not live_processes(token=token))


@needs_root
async def test_process_limit_refuses_forks_although_we_are_root(
    sandbox: Sandbox, base_dir: Path, run_as: RunAs
) -> None:
    forker = """
import os, time
children = 0
try:
    while children < 100:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
except BlockingIOError:
    print("refused after", children)
"""
    limits = SandboxLimits(max_processes=10)
    result = await sandbox.run(job(base_dir, forker, kind="python", limits=limits))
    assert result.exit_code == 0, result.output_excerpt
    refused_after = int(result.output_excerpt.split()[-1])
    assert 0 < refused_after < 10
    assert live_processes(uid=run_as.uid) == []


@needs_root
async def test_fork_bomb_is_contained(sandbox: Sandbox, base_dir: Path, run_as: RunAs) -> None:
    limits = SandboxLimits(max_processes=32, wall_timeout_seconds=3)
    started = time.monotonic()
    result = await sandbox.run(job(base_dir, ":(){ :|:& };:\nsleep 30", limits=limits))
    assert time.monotonic() - started < 10
    assert "Resource temporarily unavailable" in result.output_excerpt
    assert live_processes(uid=run_as.uid) == []
    host_child = await asyncio.create_subprocess_exec("true")
    assert await host_child.wait() == 0


@needs_root
@pytest.mark.parametrize("backend", [pytest.param(BwrapSandbox, marks=needs_bwrap), ProcessSandbox])
async def test_root_runs_sandboxes_as_nobody(backend: type[Sandbox], base_dir: Path) -> None:
    result = await backend().run(job(base_dir, "id -u; id -g"))
    assert result.output_excerpt == "65534\n65534\n"


@needs_root
def test_sandbox_runs_under_uvloop(sandbox: Sandbox, base_dir: Path, run_as: RunAs) -> None:
    """uvicorn and ``taskgate worker`` run on uvloop, whose subprocesses differ from asyncio's."""
    uvloop = pytest.importorskip("uvloop")
    result = uvloop.run(sandbox.run(job(base_dir, "id -u; echo ok")))
    assert result.exit_code == 0
    assert result.output_excerpt == f"{run_as.uid}\nok\n"


@needs_root
async def test_an_unreachable_work_dir_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    with pytest.raises(SandboxError, match="not searchable"):
        await sandbox.run(job(hidden, "true"))


@needs_bwrap
async def test_bwrap_shows_nothing_of_the_host_but_the_work_dir(
    bwrap: BwrapSandbox, process: ProcessSandbox, base_dir: Path
) -> None:
    secret = base_dir / "secret.txt"
    secret.write_text("host secret")
    secret.chmod(0o644)
    probe = f"""
cat {secret}
for path in /root /home /var /opt /etc/shadow {THIS_FILE}; do
    test -e $path && echo "sees $path"
done
touch /usr/x || echo "usr read-only"
touch /x || echo "root read-only"
grep CapEff /proc/self/status
echo written > inside.txt
"""
    inside = await bwrap.run(job(base_dir, probe))
    assert "host secret" not in inside.output_excerpt
    assert f"cat: {secret}: No such file or directory" in inside.output_excerpt
    assert "sees" not in inside.output_excerpt
    assert "usr read-only" in inside.output_excerpt
    assert "root read-only" in inside.output_excerpt
    assert "CapEff:\t0000000000000000" in inside.output_excerpt
    assert (base_dir / "work" / "inside.txt").read_text() == "written\n"
    # The same uid outside the namespaces can read the file: bwrap is what hides it.
    outside = await process.run(job(base_dir, f"cat {secret}"))
    assert outside.output_excerpt == "host secret"


@needs_bwrap
@needs_root
async def test_bwrap_leaves_not_even_a_zombie(
    bwrap: BwrapSandbox, base_dir: Path, run_as: RunAs
) -> None:
    limits = SandboxLimits(wall_timeout_seconds=1)
    result = await bwrap.run(job(base_dir, "sleep 30 &\nsleep 30", limits=limits))
    assert result.outcome == "timeout"
    assert host_processes(uid=run_as.uid) == []


@needs_bwrap
@needs_root
async def test_bwrap_returns_once_nothing_of_the_sandbox_runs(
    bwrap: BwrapSandbox, base_dir: Path, run_as: RunAs
) -> None:
    script = "for i in $(seq 8); do sleep 30 >/dev/null 2>&1 & done"
    for _ in range(20):  # the window this guards against is narrow: give it many chances
        await bwrap.run(job(base_dir, script))
        # bwrap may exit before its init, leaving that init for the host's init to reap.
        assert {found.state for found in host_processes(uid=run_as.uid)} <= {"Z"}


@needs_bwrap
async def test_bwrap_network_is_off_unless_requested(bwrap: BwrapSandbox, base_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = f"""
import socket
print("interfaces", sorted(name for _, name in socket.if_nameindex()))
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
    print("connected")
except OSError as exc:
    print("failed", type(exc).__name__)
"""
        offline = await bwrap.run(job(base_dir, probe, kind="python"))
        online = await bwrap.run(job(base_dir, probe, kind="python", network=True))
    assert offline.output_excerpt.splitlines() == [
        "interfaces ['lo']",
        "failed ConnectionRefusedError",
    ]
    assert online.output_excerpt.splitlines()[-1] == "connected"


@needs_bwrap
def test_select_sandbox_prefers_a_working_bwrap() -> None:
    sandbox = select_sandbox()
    assert (sandbox.name, sandbox.isolated) == ("bwrap", True)


def test_select_sandbox_falls_back_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap to be found
    with capture_logs() as logs:
        sandbox = select_sandbox("auto")
    assert (sandbox.name, sandbox.isolated) == ("process", False)
    assert [log["event"] for log in logs if log["log_level"] == "warning"] == ["sandbox.unisolated"]
    with pytest.raises(SandboxError, match="bwrap"):
        select_sandbox("bwrap")


def test_probe_explains_a_broken_bwrap() -> None:
    problem = BwrapSandbox("/bin/false").probe()
    assert problem is not None
    assert "exited with 1" in problem
