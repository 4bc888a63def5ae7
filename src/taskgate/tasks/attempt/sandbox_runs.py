"""Running a task's script or commands in the sandbox, its output streamed as job.output."""

from __future__ import annotations

import codecs
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from taskgate.runtime.context import JobContext, Runtime
from taskgate.runtime.sandbox import Sandbox, SandboxLimits, SandboxRequest, SandboxResult
from taskgate.runtime.sandbox.base import Kind
from taskgate.settings import Settings
from taskgate.tasks.attempt.event_batch import EventBatcher


async def sandbox_of(runtime: Runtime) -> Sandbox:
    """The process's sandbox (``RuntimeServices.sandbox``), reported in the node's row."""
    sandbox = await runtime.services.sandbox()
    if "sandbox" not in runtime.capabilities:
        runtime.capabilities["sandbox"] = {"backend": sandbox.name, "isolated": sandbox.isolated}
    return sandbox


def work_dir(settings: Settings, task_id: uuid.UUID) -> Path:
    return settings.data_dir / "work" / str(task_id)


def discard_work_dir(settings: Settings, task_id: uuid.UUID) -> None:
    """A finished task's files go; its full output stays in the output dir."""
    shutil.rmtree(work_dir(settings, task_id), ignore_errors=True)


def output_path(settings: Settings, job_id: uuid.UUID) -> Path:
    return settings.data_dir / "output" / f"{job_id}.log"


def request_for(
    settings: Settings,
    *,
    task_id: uuid.UUID,
    job_id: uuid.UUID,
    kind: Kind,
    timeout_seconds: float,
    content: str = "",
    commands: Sequence[str] = (),
) -> SandboxRequest:
    config = settings.sandbox
    limits = SandboxLimits(
        cpu_seconds=config.cpu_seconds,
        memory_bytes=config.memory_bytes,
        max_processes=config.max_processes,
        file_size_bytes=config.file_size_bytes,
        wall_timeout_seconds=max(timeout_seconds, 0.001),
        output_cap_bytes=config.output_cap_bytes,
    )
    return SandboxRequest(
        kind=kind,
        content=content,
        commands=tuple(commands),
        work_dir=work_dir(settings, task_id),
        network=config.network,
        limits=limits,
        output_path=output_path(settings, job_id),
    )


async def run_streamed(
    ctx: JobContext, batcher: EventBatcher, job_id: uuid.UUID, request: SandboxRequest
) -> SandboxResult:
    """Run the request; output goes out as job.output events {stream, chunk, offset}, where
    offset counts the bytes of combined output before the chunk."""
    sandbox = await sandbox_of(ctx.runtime)
    decoders: dict[str, codecs.IncrementalDecoder] = {}
    offset = 0

    async def on_output(stream: str, chunk: bytes) -> None:
        nonlocal offset
        decoder = decoders.get(stream)
        if decoder is None:
            decoder = decoders[stream] = codecs.getincrementaldecoder("utf-8")("replace")
        text = decoder.decode(chunk)
        if text:
            batcher.add(
                "job.output",
                {"stream": stream, "chunk": text, "offset": offset},
                job_id=job_id,
                text_key="chunk",
                merge_on=(stream,),
            )
        offset += len(chunk)

    return await sandbox.run(request, on_output)


def describe(result: SandboxResult) -> str:
    """The result as an agent tool sees it: the output, then how it ended."""
    if result.outcome == "timeout":
        ending = "timed out"
    elif result.outcome == "killed":
        ending = f"killed by signal {result.signal}"
    else:
        ending = f"exit code {result.exit_code}"
    truncated = "\n[output truncated]" if result.output_truncated else ""
    return f"{result.output_excerpt}{truncated}\n[{ending}]"
