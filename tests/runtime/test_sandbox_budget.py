"""Sandboxes side by side: each its own process budget, bwrap's failures told from the user's,
and never user code without isolation unless an operator chose it."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from taskgate.runtime.sandbox import (
    BwrapSandbox,
    RunAs,
    SandboxError,
    SandboxLimits,
    SandboxUnavailable,
    UidPool,
    select_sandbox,
)
from taskgate.runtime.sandbox.uids import kill_uid
from tests.runtime.sandbox_support import Output, job, live_processes, needs_bwrap, needs_root

pytestmark = [needs_bwrap, needs_root]


@pytest.fixture
def default_bwrap() -> BwrapSandbox:
    """bwrap as a worker running as root gets it: the default identity, no test-made uid."""
    return BwrapSandbox()


async def test_64_concurrent_sandboxes_all_succeed(
    default_bwrap: BwrapSandbox, base_dir: Path
) -> None:
    # Each lasts a second so all 64 overlap: with one shared uid, 192 processes against 128.
    runs = [default_bwrap.run(job(base_dir / str(i), "sleep 1")) for i in range(64)]
    results = await asyncio.gather(*runs, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException) or r.exit_code != 0]
    assert failed == []


async def test_a_fork_bomb_leaves_a_concurrent_sandbox_alone(
    default_bwrap: BwrapSandbox, base_dir: Path
) -> None:
    exhausted = Output(b"Resource temporarily unavailable")
    bomb = asyncio.create_task(
        default_bwrap.run(
            job(base_dir / "bomb", ":(){ :|:& };:\nsleep 60", limits=SandboxLimits()), exhausted
        )
    )
    try:
        await asyncio.wait_for(exhausted.seen.wait(), timeout=30)
        script = "for i in $(seq 20); do /bin/true; done; echo unaffected"
        victim = await default_bwrap.run(job(base_dir / "victim", script))
    finally:
        bomb.cancel()
        with pytest.raises(asyncio.CancelledError):
            await bomb
    assert (victim.exit_code, victim.output_excerpt) == (0, "unaffected\n")


async def test_bwrap_failing_to_start_is_a_sandbox_error_not_an_exit_code(
    bwrap: BwrapSandbox, base_dir: Path
) -> None:
    # A budget of one process leaves bwrap no room for its namespaces: the host's EAGAIN.
    request = job(base_dir, "exit 1", limits=SandboxLimits(max_processes=1))
    with pytest.raises(SandboxError, match="Resource temporarily unavailable"):
        await bwrap.run(request)
    # The user's own exit status stays the user's.
    assert (await bwrap.run(job(base_dir, "exit 1"))).exit_code == 1


@pytest.fixture
def exhausted_uid(run_as: RunAs) -> Iterator[RunAs]:
    """A uid whose whole process budget other processes already hold."""
    hogs = subprocess.Popen(
        [
            *("setpriv", f"--reuid={run_as.uid}", f"--regid={run_as.gid}", "--clear-groups"),
            *("--", "bash", "-c", "for i in $(seq 140); do sleep 120 & done; echo ready; wait"),
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert hogs.stdout is not None
        assert hogs.stdout.readline() == b"ready\n"
        yield run_as
    finally:
        hogs.kill()
        hogs.wait()
        kill_uid(run_as.uid)


async def test_an_exhausted_probe_does_not_degrade_isolation(
    exhausted_uid: RunAs, base_dir: Path
) -> None:
    with capture_logs() as logs:
        sandbox = select_sandbox("auto", exhausted_uid)
    assert (sandbox.name, sandbox.isolated) == ("bwrap", True)
    assert [log["event"] for log in logs if log["log_level"] == "error"] == ["sandbox.probe_failed"]
    with pytest.raises(SandboxError):
        await sandbox.run(job(base_dir, "touch ran"))
    assert not (base_dir / "work" / "ran").exists()


@pytest.mark.parametrize("backend", ["auto", "bwrap"])
async def test_without_bwrap_user_code_is_refused_not_run(
    backend: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, base_dir: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap to be found
    with capture_logs() as logs:
        sandbox = select_sandbox(backend)  # type: ignore[arg-type]
    assert sandbox.isolated is False
    assert [log["event"] for log in logs] == ["sandbox.unavailable"]
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        await sandbox.run(job(base_dir, "touch ran"))
    assert not (base_dir / "work" / "ran").exists()


def test_no_process_of_a_test_uid_is_left(run_as: RunAs) -> None:
    assert live_processes(uid=run_as.uid) == []


def test_the_uid_range_is_leased_across_processes(tmp_path: Path) -> None:
    first = 3_000_000 + secrets.randbelow(10**6) * 4
    holder = f"""
import sys, time
from pathlib import Path
from taskgate.runtime.sandbox import UidPool
pool = UidPool({first}, 2, Path({str(tmp_path)!r}))
with pool.lease() as one, pool.lease() as two:
    print(one.uid, two.uid, flush=True)
    sys.stdin.read()
"""
    other = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert other.stdout is not None
        assert sorted(map(int, other.stdout.readline().split())) == [first, first + 1]
        pool = UidPool(first, 2, tmp_path)
        with pytest.raises(SandboxError, match="in use"), pool.lease():
            pass
    finally:
        other.kill()
        other.wait()
    with UidPool(first, 2, tmp_path).lease() as leased:  # free again once its holder is gone
        assert leased.uid in (first, first + 1)


def test_what_a_dead_holder_left_under_its_uid_is_killed(tmp_path: Path) -> None:
    first = 3_000_000 + secrets.randbelow(10**6) * 4
    holder = f"""
import subprocess, sys
from pathlib import Path
from taskgate.runtime.sandbox import UidPool
with UidPool({first}, 1, Path({str(tmp_path)!r})).lease() as run_as:
    # A sandbox that escaped its parent-death signal: started just as the worker was killed.
    subprocess.Popen(["setpriv", f"--reuid={{run_as.uid}}", f"--regid={{run_as.gid}}",
                      "--clear-groups", "sleep", "300"], start_new_session=True)
    print("started", flush=True)
    sys.stdin.read()
"""
    dead = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert dead.stdout is not None
    assert dead.stdout.readline() == b"started\n"
    dead.kill()
    dead.wait()
    assert live_processes(uid=first) != []
    assert UidPool(first, 1, tmp_path).sweep() == 1
    assert live_processes(uid=first) == []
    assert UidPool(first, 1, tmp_path).sweep() == 0
