"""One attempt at a text task: the agent loop with a model, ending in a state the task keeps."""

from __future__ import annotations

import asyncio
from typing import Any

from taskgate.approvals.service import request_task_approval
from taskgate.runtime.agent import AgentConfig, AgentOutcome, run_agent
from taskgate.runtime.context import JobContext, RetryLater
from taskgate.runtime.providers import (
    ChatMessage,
    ModelError,
    ModelPrice,
    PriceTable,
)
from taskgate.settings import Settings
from taskgate.tasks import repository as repo
from taskgate.tasks.attempt.agent_host import (
    ApprovalNeeded,
    CancelRequested,
    PauseRequested,
    TaskAgentHost,
)
from taskgate.tasks.attempt.event_batch import EventBatcher
from taskgate.tasks.attempt.run_rows import close_model_job
from taskgate.tasks.attempt.sandbox_runs import discard_work_dir
from taskgate.tasks.attempt.transactions import Attempt, Ending, end_attempt
from taskgate.tasks.attempt.transcript import RecordingProvider, plan_resume, to_wire
from taskgate.tasks.service import MODEL_UNAVAILABLE_MESSAGE
from taskgate.tasks.states import TaskStatus, is_final

S = TaskStatus
SESSION_TURNS = 10
MAX_RETRY_DELAY = 60.0


def price_table(settings: Settings) -> PriceTable:
    return PriceTable({name: ModelPrice(*pair) for name, pair in settings.model.prices.items()})


async def _session_history(ctx: JobContext, attempt: Attempt) -> list[ChatMessage]:
    if attempt.session_id is None or attempt.parent_task_id is not None:
        return []
    async with ctx.runtime.db.transaction(write=False) as session:
        turns = await repo.session_turns(
            session, attempt.session_id, attempt.created_at, SESSION_TURNS
        )
    history: list[ChatMessage] = []
    for query, result in turns:
        history += [ChatMessage.user(query), ChatMessage.assistant(result)]
    return history


async def run_agent_attempt(ctx: JobContext, attempt: Attempt, batcher: EventBatcher) -> None:
    settings = ctx.runtime.settings
    provider = ctx.runtime.services.model
    if provider is None:
        ending = Ending(S.FAILED, error_code="MODEL_UNAVAILABLE", error=MODEL_UNAVAILABLE_MESSAGE)
        await _finish(ctx, attempt, batcher, ending, "")
        return
    plan = plan_resume(attempt.resume) if attempt.resume else None
    if plan is not None:
        history, query = plan.history, plan.query
    else:
        history, query = await _session_history(ctx, attempt), attempt.query or ""
    start = [*history, ChatMessage.user(query)]
    recorder = RecordingProvider(
        provider, price_table(settings), start, plan.replay if plan else None
    )
    host = TaskAgentHost(ctx, attempt, batcher, recorder, plan)
    config = AgentConfig(
        model=attempt.model_override or settings.model.model,
        max_iterations=attempt.max_iterations or settings.model.max_iterations,
        approval_required_tools=frozenset(attempt.context.get("approval_required_tools") or ()),
    )

    async def work() -> AgentOutcome:
        async with asyncio.timeout(attempt.remaining()):
            return await run_agent(
                recorder,
                host,
                config,
                query=query,
                history=history,
                acceptance_criteria=attempt.acceptance_criteria or None,
            )

    def saved(**extra: Any) -> dict[str, Any]:
        messages = [to_wire(m) for m in recorder.conversation()]
        return {"messages": messages, **extra}

    retry: RetryLater | None = None
    text = ""
    try:
        outcome = await batcher.alongside(work())
        text = outcome.final_text
        ending = _ending_of(outcome, saved())
    except PauseRequested:
        ending = Ending(S.PAUSED, transcript=saved(resumable=True))
    except CancelRequested:
        ending = Ending(S.CANCELLED, transcript=saved())
    except ApprovalNeeded as need:
        pending = {"call_id": need.call_id, "tool": need.tool, "arguments": need.arguments}
        ending = Ending(
            S.WAITING_APPROVAL,
            transcript=saved(resumable=True, pending=pending),
            event_payload=pending,
        )
    except TimeoutError:
        error = f"the task ran past its timeout of {attempt.timeout_seconds} s"
        ending = Ending(S.TIMEOUT, error_code="TIMEOUT", error=error, transcript=saved())
    except ModelError as exc:
        if exc.retryable and ctx.attempt < ctx.max_attempts:
            delay = exc.retry_after or min(2.0 ** (ctx.attempt - 1), MAX_RETRY_DELAY)
            ending = Ending(
                S.QUEUED,
                error_code=exc.code,
                error=exc.message,
                transcript=saved(resumable=True),
                event_payload={"retry_in_seconds": delay, "attempt": ctx.attempt},
            )
            retry = RetryLater(f"{exc.code}: {exc.message}", delay)
        else:
            ending = Ending(S.FAILED, error_code=exc.code, error=exc.message, transcript=saved())
    ending.usage = recorder.usage_record()
    ending.model_used = recorder.model or config.model
    ending.provider = provider.name
    await _finish(ctx, attempt, batcher, ending, text, complete=retry is None)
    if retry is not None:
        raise retry


def _ending_of(outcome: AgentOutcome, transcript: dict[str, Any]) -> Ending:
    verification = None
    if outcome.verification is not None:
        verification = {
            "passed": outcome.verification.passed,
            "reason": outcome.verification.reason,
        }
    payload: dict[str, Any] = {"iterations": outcome.iterations, "verification": verification}
    transcript = {**transcript, "verification": verification}
    if outcome.status == "completed":
        return Ending(
            S.COMPLETED, result=outcome.final_text, transcript=transcript, event_payload=payload
        )
    if outcome.status == "max_iterations":
        code, error = "MAX_ITERATIONS", f"stopped after {outcome.iterations} model calls"
    elif verification is not None and not verification["passed"]:
        code, error = "VERIFICATION_FAILED", outcome.error or "acceptance criteria not met"
    else:
        code, error = "AGENT_FAILED", outcome.error or "the agent failed"
    return Ending(
        S.FAILED,
        result=outcome.final_text or None,
        error_code=code,
        error=error,
        transcript=transcript,
        event_payload=payload,
    )


async def _finish(
    ctx: JobContext,
    attempt: Attempt,
    batcher: EventBatcher,
    ending: Ending,
    text: str,
    *,
    complete: bool = True,
) -> None:
    job_status = S.FAILED.value if ending.status is S.QUEUED else ending.status.value
    async with ctx.transaction(fenced=False) as session:
        task = await ctx.locked(session, repo.TASK_BY_ID, {"task_id": attempt.task_id})
        assert task is not None
        await batcher.flush_into(session)
        await close_model_job(
            session,
            task,
            attempt.job_id,
            job_status,
            text,
            ending.usage or {},
            ending.error,
            ctx.runtime.settings.sandbox.output_cap_bytes,
        )
        if ending.status is S.WAITING_APPROVAL:
            approval = await request_task_approval(
                session,
                task,
                tool=ending.event_payload["tool"],
                arguments=ending.event_payload["arguments"],
            )
            ending.event_payload["approval_id"] = str(approval.id)
        await end_attempt(session, task, attempt, ending)
        if complete:
            await ctx.complete(session)
    if is_final(ending.status):
        discard_work_dir(ctx.runtime.settings, attempt.task_id)
