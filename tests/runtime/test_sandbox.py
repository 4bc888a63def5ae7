"""The sandbox for real (bubblewrap and processes): running work, its output, its limits."""

from __future__ import annotations

import asyncio
import os
import resource
import secrets
import signal
import time
from pathlib import Path

import pytest

from taskgate.runtime.sandbox import (
    RunAs,
    Sandbox,
    SandboxLimits,
    spawn,
)
from tests.runtime.sandbox_support import (
    MIB,
    Output,
    job,
    live_processes,
)


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
