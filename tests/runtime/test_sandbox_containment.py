"""The sandbox for real (bubblewrap and processes): what user code cannot reach or outlive."""

from __future__ import annotations

import asyncio
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from taskgate.runtime.sandbox import (
    BwrapSandbox,
    ProcessSandbox,
    RunAs,
    Sandbox,
    SandboxError,
    SandboxLimits,
    UidPool,
    select_sandbox,
)
from tests.runtime.sandbox_support import (
    host_processes,
    job,
    live_processes,
    needs_bwrap,
    needs_root,
)

THIS_FILE = Path(__file__).resolve()


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
async def test_root_runs_each_sandbox_as_a_uid_of_its_own(
    backend: type[Sandbox], base_dir: Path, tmp_path: Path
) -> None:
    pool = UidPool(3_000_000 + secrets.randbelow(10**6) * 4, 4, tmp_path / "leases")
    sandbox = backend(run_as=pool)  # type: ignore[call-arg]
    script = "id -u; id -g; sleep 0.5"
    results = await asyncio.gather(*(sandbox.run(job(base_dir / str(i), script)) for i in range(4)))
    uids = {result.output_excerpt.split()[0] for result in results}
    assert len(uids) == 4
    assert {int(uid) for uid in uids} <= set(range(pool.first, pool.first + pool.count))
    assert all(r.output_excerpt.split()[0] == r.output_excerpt.split()[1] for r in results)


@needs_root
def test_sandbox_runs_under_uvloop(sandbox: Sandbox, base_dir: Path, run_as: RunAs) -> None:
    """uvicorn and ``taskgate worker`` run on uvloop, whose subprocesses differ from asyncio's."""
    uvloop = pytest.importorskip("uvloop")
    result = uvloop.run(sandbox.run(job(base_dir, "id -u; echo ok")))
    assert result.exit_code == 0
    assert result.output_excerpt == f"{run_as.uid}\nok\n"


@needs_root
async def test_the_process_backend_refuses_an_unreachable_work_dir(
    process: ProcessSandbox, tmp_path: Path
) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    with pytest.raises(SandboxError, match="not searchable"):
        await process.run(job(hidden, "true"))


@needs_bwrap
@needs_root
async def test_bwrap_runs_in_a_work_dir_under_a_private_directory(
    bwrap: BwrapSandbox, tmp_path: Path, run_as: RunAs
) -> None:
    hidden = tmp_path / "home"
    hidden.mkdir(mode=0o700)  # a home directory, or what mktemp -d makes
    result = await bwrap.run(job(hidden, "echo written > inside.txt; pwd; ls"))
    assert (result.exit_code, result.output_excerpt) == (0, "/work\ninside.txt\n")
    assert (hidden / "work" / "inside.txt").read_text() == "written\n"
    assert live_processes(uid=run_as.uid) == []


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


def test_probe_explains_a_broken_bwrap() -> None:
    problem = BwrapSandbox("/bin/false").probe()
    assert problem is not None
    assert "exited with 1" in problem
