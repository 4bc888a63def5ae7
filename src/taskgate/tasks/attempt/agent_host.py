"""What the agent loop reaches through: events, control checks, the sandbox and sub-tasks."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import select

from taskgate.ids import new_id
from taskgate.models import Task
from taskgate.runtime.agent import ApprovalOutcome, ToolOutcome
from taskgate.runtime.context import JobContext
from taskgate.runtime.queue import request_cancel
from taskgate.runtime.sandbox import SandboxError
from taskgate.tasks import repository as repo
from taskgate.tasks.attempt.event_batch import EventBatcher
from taskgate.tasks.attempt.run_rows import close_sandbox_job, open_job
from taskgate.tasks.attempt.sandbox_runs import describe, request_for, run_streamed
from taskgate.tasks.attempt.transactions import Attempt
from taskgate.tasks.attempt.transcript import RecordingProvider, ResumePlan
from taskgate.tasks.lifecycle import enqueue_run, move, stop_running, task_event
from taskgate.tasks.states import TaskStatus, is_final

MAX_SUBTASK_DEPTH = 3
_POLL_START, _POLL_MAX = 0.05, 1.0


class PauseRequested(Exception):
    """The user asked to pause: the loop stops at a step boundary."""


class CancelRequested(Exception):
    """The user asked to cancel and the worker has not cancelled the handler yet."""


class ApprovalNeeded(Exception):
    def __init__(self, call_id: str, tool: str, arguments: dict[str, Any]) -> None:
        super().__init__(f"{tool} needs approval")
        self.call_id, self.tool, self.arguments = call_id, tool, arguments


class TaskAgentHost:
    """An ``AgentHost`` for one attempt at a text task."""

    def __init__(
        self,
        ctx: JobContext,
        attempt: Attempt,
        batcher: EventBatcher,
        recorder: RecordingProvider,
        plan: ResumePlan | None = None,
    ) -> None:
        self.ctx = ctx
        self.attempt = attempt
        self.batcher = batcher
        self.recorder = recorder
        self.recorded = dict(plan.recorded) if plan else {}
        self.decision = plan.decision if plan else None
        self.current_call: str | None = None

    async def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        if event_type == "task.output.delta":
            iteration = payload.get("iteration")
            self.batcher.add(event_type, payload, text_key="delta", merge_on=(iteration,))
            return
        call_id = payload.get("id")
        if event_type == "agent.tool_call":
            self.current_call = call_id
        if event_type == "agent.tool_result" and isinstance(call_id, str):
            self.recorder.tool_result(call_id, str(payload.get("tool")), str(payload["output"]))
        if call_id in self.recorded or (event_type == "agent.tool_call" and self._decided(call_id)):
            return  # announced by the attempt that ran (or suspended on) this call
        self.batcher.add(event_type, payload, urgent=True)

    async def checkpoint(self) -> None:
        async with self.ctx.runtime.db.transaction(write=False) as session:
            row = (
                await session.execute(
                    select(Task.pause_requested_at, Task.cancel_requested_at).where(
                        Task.id == self.attempt.task_id
                    )
                )
            ).one()
        if row.cancel_requested_at is not None:
            raise CancelRequested()
        if row.pause_requested_at is not None:
            raise PauseRequested()

    async def run_commands(self, commands: list[str]) -> ToolOutcome:
        if self.current_call in self.recorded:
            return ToolOutcome(self.recorded[self.current_call])
        attempt = self.attempt
        await self.batcher.flush()  # the tool call's event goes before its job's
        async with self.ctx.transaction() as session:
            task = await session.get(Task, attempt.task_id)
            assert task is not None
            job_id = await open_job(
                session,
                task,
                attempt.run_id,
                "sandbox",
                {"commands": commands},
                self.ctx.runtime.node_id,
            )
        request = request_for(
            self.ctx.runtime.settings,
            task_id=attempt.task_id,
            job_id=job_id,
            kind="commands",
            commands=commands,
            timeout_seconds=attempt.remaining(),
        )
        try:
            result = await run_streamed(self.ctx, self.batcher, job_id, request)
        except SandboxError as exc:
            return ToolOutcome(f"Error: the sandbox failed: {exc}", is_error=True)
        await self.batcher.flush()
        async with self.ctx.transaction() as session:
            task = await session.get(Task, attempt.task_id)
            assert task is not None
            await close_sandbox_job(session, task, job_id, result)
        failed = result.outcome != "exited" or result.exit_code != 0
        return ToolOutcome(describe(result), is_error=failed)

    async def spawn_subtask(self, query: str) -> ToolOutcome:
        if self.current_call in self.recorded:
            return ToolOutcome(self.recorded[self.current_call])
        depth = int(self.attempt.context.get("subtask_depth", 0)) + 1
        if depth > MAX_SUBTASK_DEPTH:
            return ToolOutcome(
                f"Error: sub-tasks nest at most {MAX_SUBTASK_DEPTH} deep; do this yourself.",
                is_error=True,
            )
        child_id = await self._create_child(query, depth)
        try:
            child = await self._wait_for(child_id)
        except asyncio.CancelledError:
            await asyncio.shield(self._cancel_child(child_id))
            raise
        if child.status == TaskStatus.COMPLETED.value:
            return ToolOutcome(child.result or "")
        why = f": {child.error}" if child.error else ""
        return ToolOutcome(f"Sub-task {child_id} ended {child.status}{why}", is_error=True)

    async def request_approval(self, tool: str, arguments: dict[str, Any]) -> ApprovalOutcome:
        if self.decision is not None and self._decided(self.current_call):
            reason = self.decision.get("reason") or ""
            return ApprovalOutcome(bool(self.decision["approved"]), reason)
        raise ApprovalNeeded(self.current_call or "", tool, arguments)

    def _decided(self, call_id: Any) -> bool:
        return self.decision is not None and self.decision.get("call_id") == call_id

    async def _create_child(self, query: str, depth: int) -> uuid.UUID:
        attempt = self.attempt
        await self.batcher.flush()
        async with self.ctx.transaction() as session:
            parent = await session.get(Task, attempt.task_id)
            assert parent is not None
            child = Task(
                id=new_id(),
                owner_id=parent.owner_id,
                project_id=parent.project_id,
                session_id=parent.session_id,
                parent_task_id=parent.id,
                parent_run_id=attempt.run_id,
                kind="query",
                status=TaskStatus.QUEUED.value,
                query=query,
                input={},
                attachments=[],
                acceptance_criteria=[],
                context={"parent_task_id": str(parent.id), "subtask_depth": depth},
                labels=[],
                model_override=parent.model_override,
                max_iterations=parent.max_iterations,
                timeout_seconds=max(int(attempt.remaining()), 1),
                priority=parent.priority,
                input_tokens=0,
                output_tokens=0,
                cost_usd=0.0,
                attempts=0,
            )
            session.add(child)
            await task_event(session, child, "task.created", {"kind": "query", "parent": True})
            await enqueue_run(session, child)
            await task_event(
                session,
                parent,
                "agent.subtask_started",
                {"child_task_id": str(child.id), "query": query},
                run_id=attempt.run_id,
            )
        return child.id

    async def _wait_for(self, child_id: uuid.UUID) -> Task:
        delay = _POLL_START
        while True:
            async with self.ctx.runtime.db.transaction(write=False) as session:
                child = await session.get(Task, child_id)
            assert child is not None
            if is_final(child.status):
                return child
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, _POLL_MAX)

    async def _cancel_child(self, child_id: uuid.UUID) -> None:
        """The parent stopped: its sub-task stops too."""
        why = "the parent task stopped"
        async with self.ctx.runtime.db.transaction() as session:
            child = await repo.task_for_update(session, child_id)
            if child is None or is_final(child.status):
                return
            if child.status == TaskStatus.RUNNING.value:
                lease = self.ctx.runtime.settings.worker.lease_seconds
                await stop_running(session, child, reason=why, by="taskgate", lease_seconds=lease)
                return
            child.cancel_reason = why
            await move(session, child, TaskStatus.CANCELLED, {"reason": why})
            if child.queue_job_id is not None:
                await request_cancel(session, child.queue_job_id)
