"""The tasks' job kinds. ``task.run``: one attempt at a task, from RUNNING to a final (or
paused) state. And how a task waiting on an approval resumes (``approvals/waiters.py``).

Every write happens in ``ctx.transaction()``, which commits only while this worker holds the
job's lease: a worker that lost it (the job was retaken) stops without writing anything.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.approvals.service import APPROVED
from taskgate.events.outbox import events_together
from taskgate.models import Approval, Task
from taskgate.runtime.context import JobContext, LeaseLost, RetryLater, Runtime
from taskgate.runtime.handlers import JobKind
from taskgate.runtime.queue import retry_delay
from taskgate.runtime.sandbox import SandboxError, SandboxResult, SandboxUnavailable
from taskgate.tasks import repository as repo
from taskgate.tasks.attempt.agent_runner import run_agent_attempt
from taskgate.tasks.attempt.event_batch import EventBatcher
from taskgate.tasks.attempt.run_rows import (
    close_open_work,
    closed_sandbox_job,
    record_sandbox_job_closed,
)
from taskgate.tasks.attempt.sandbox_runs import discard_work_dir, request_for, run_streamed
from taskgate.tasks.attempt.transactions import Attempt, Ending, end_attempt, start_attempt
from taskgate.tasks.lifecycle import RUN_KIND, fail, move
from taskgate.tasks.service import ApprovalDecision, resume_after_approval
from taskgate.tasks.states import TaskStatus, is_final

S = TaskStatus
log = structlog.get_logger(__name__)


async def run_task(ctx: JobContext) -> None:
    task_id = uuid.UUID(str(ctx.payload["task_id"]))
    attempt: Attempt | None = None
    try:
        attempt = await start_attempt(ctx, task_id)
        if attempt is None:
            return
        batcher = EventBatcher(ctx, attempt.subject)
        if attempt.kind == "query":
            await run_agent_attempt(ctx, attempt, batcher)
        else:
            await _run_sandboxed(ctx, attempt, batcher)
    except asyncio.CancelledError:
        # Also while the attempt was being opened: its commit may have made the task RUNNING.
        await asyncio.shield(_record_cancellation(ctx, task_id, attempt))
        raise


async def _run_sandboxed(ctx: JobContext, attempt: Attempt, batcher: EventBatcher) -> None:
    outcome = await batcher.alongside(_sandbox_run(ctx, attempt, batcher))
    if isinstance(outcome, Ending):
        retry = outcome.status is S.QUEUED
        await _finish(ctx, attempt, batcher, outcome, complete=not retry)
        if retry:
            raise RetryLater(
                f"SANDBOX_ERROR: {outcome.error}", outcome.event_payload["retry_in_seconds"]
            )
        return
    await _finish(ctx, attempt, batcher, _sandbox_ending(outcome), outcome)


async def _sandbox_run(
    ctx: JobContext, attempt: Attempt, batcher: EventBatcher
) -> SandboxResult | Ending:
    """The sandbox's result, or how the attempt ends when the sandbox could not run the
    user's code: that is never the user's exit status, and never a crashed worker."""
    script = attempt.input.get("script")
    try:
        request = request_for(
            ctx.runtime.settings,
            task_id=attempt.task_id,
            job_id=attempt.job_id,
            kind=script["language"] if script else "commands",
            content=script["content"] if script else "",
            commands=attempt.input.get("commands") or (),
            timeout_seconds=attempt.remaining(),
        )
        return await run_streamed(ctx, batcher, attempt.job_id, request)
    except SandboxUnavailable as exc:
        return Ending(S.FAILED, error_code="SANDBOX_UNAVAILABLE", error=str(exc))
    except SandboxError as exc:
        # bwrap itself failed (the host short of processes or memory): not the user's doing,
        # so the queue tries again with its backoff while attempts remain.
        if ctx.attempt < ctx.max_attempts:
            delay = retry_delay(ctx.attempt)
            payload = {"retry_in_seconds": delay, "attempt": ctx.attempt}
            error = f"the sandbox failed to start, retrying: {exc}"
            return Ending(S.QUEUED, error_code="SANDBOX_ERROR", error=error, event_payload=payload)
        error = f"the sandbox failed to start {ctx.attempt} times: {exc}"
        return Ending(S.FAILED, error_code="SANDBOX_ERROR", error=error)
    except Exception as exc:  # a bug here must fail this task, not the worker, again and again
        log.exception("task.sandbox_crashed", task_id=str(attempt.task_id))
        error = f"the sandbox could not run this task: {type(exc).__name__}: {exc}"
        return Ending(S.FAILED, error_code="SANDBOX_ERROR", error=error)


def _sandbox_ending(result: SandboxResult) -> Ending:
    payload = {"exit_code": result.exit_code, "output_bytes": result.output_bytes}
    if result.outcome == "timeout":
        error = f"timed out after {result.duration_seconds:.1f} s"
        return Ending(
            S.TIMEOUT,
            result=result.output_excerpt,
            error_code="TIMEOUT",
            error=error,
            event_payload=payload,
        )
    if result.outcome == "exited" and result.exit_code == 0:
        return Ending(S.COMPLETED, result=result.output_excerpt, event_payload=payload)
    if result.outcome == "killed":
        error = f"killed by signal {result.signal} (exit code {result.exit_code})"
    else:
        error = f"exit code {result.exit_code}"
    return Ending(
        S.FAILED,
        result=result.output_excerpt,
        error_code="NONZERO_EXIT",
        error=error,
        event_payload=payload,
    )


async def _finish(
    ctx: JobContext,
    attempt: Attempt,
    batcher: EventBatcher,
    ending: Ending,
    result: SandboxResult | None = None,
    *,
    complete: bool = True,
) -> None:
    async with ctx.transaction(fenced=False) as session:
        task = await ctx.locked(session, repo.TASK_BY_ID, {"task_id": attempt.task_id})
        assert task is not None
        async with events_together(session):
            await batcher.flush_into(session)
            closing = None
            if result is not None:
                closed = closed_sandbox_job(result)
                await record_sandbox_job_closed(
                    session, task, attempt.run_id, attempt.job_id, result, closed
                )
                closing = (attempt.job_id, closed)
            await end_attempt(session, task, attempt, ending, closing)
        if complete:
            await ctx.complete(session)
    if is_final(ending.status):
        discard_work_dir(ctx.runtime.settings, attempt.task_id)


async def _record_cancellation(
    ctx: JobContext, task_id: uuid.UUID, attempt: Attempt | None
) -> None:
    """The handler was cancelled. Only a cancel the user asked for makes the task CANCELLED; a
    worker shutting down releases the job instead, and another attempt follows. Without an
    ``attempt`` the cancel came while it was being opened: whatever it opened is closed."""
    try:
        async with ctx.transaction(fenced=False) as session:
            task = await ctx.locked(session, repo.TASK_BY_ID, {"task_id": task_id})
            if task is None or task.status != S.RUNNING.value or task.cancel_requested_at is None:
                return
            if attempt is not None:
                await end_attempt(session, task, attempt, Ending(S.CANCELLED))
            else:
                await close_open_work(session, task.id, S.CANCELLED.value, "cancelled")
                await move(session, task, S.CANCELLED, {"reason": task.cancel_reason})
    except LeaseLost:
        log.info("task.cancel_after_lease_lost", task_id=str(task_id))
        return
    discard_work_dir(ctx.runtime.settings, task_id)


async def on_task_dead(
    runtime: Runtime, job_id: uuid.UUID, kind: str, payload: dict[str, Any], reason: str
) -> None:
    """The queue gave up on the job (its workers kept dying, or it failed for good): the task
    fails, so every accepted task ends in a final state."""
    async with runtime.db.transaction() as session:
        task = await repo.task_for_update(session, uuid.UUID(str(payload["task_id"])))
        if task is None or is_final(task.status) or task.queue_job_id != job_id:
            return
        message = f"the worker gave up on this task: {reason}"
        await close_open_work(session, task.id, S.FAILED.value, message)
        await fail(session, task, "WORKER_LOST", message)


TASK_RUN = JobKind(run_task, on_dead=on_task_dead)


def job_kinds() -> dict[str, JobKind]:
    return {RUN_KIND: TASK_RUN}


async def resume_waiting_task(session: AsyncSession, approval: Approval) -> None:
    """A tool call's approval was decided or expired: the task carries on with the answer."""
    task = await session.get(Task, approval.task_id) if approval.task_id else None
    if task is None or task.status != S.WAITING_APPROVAL.value:
        return  # cancelled or failed meanwhile: nothing waits for the answer
    approved = approval.status == APPROVED
    reason = approval.feedback or ""
    if approved and approval.modified_action:
        reason = reason or "Approved with changes."
    decision = ApprovalDecision(approved=approved, reason=reason, decided_by=approval.decided_by)
    await resume_after_approval(session, task, decision)
