"""Advancing an execution: from its persisted step states, skip what will never run, start
what is ready (up to the graph's parallelism), and settle the execution's own status.

Always called with the execution row locked (``repository.execution_for_update``), so two
advances of one execution never plan from the same states.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.clock import utcnow
from taskgate.events.outbox import record_event
from taskgate.ids import new_id
from taskgate.models import ExecutionStep, WorkflowExecution, WorkflowVersion
from taskgate.runtime.queue import enqueue
from taskgate.workflows import repository as repo
from taskgate.workflows.definitions.checks import max_parallel
from taskgate.workflows.definitions.graph import Graph
from taskgate.workflows.definitions.graph_validation import validate_graph
from taskgate.workflows.engine.planner import (
    StepState,
    execution_outcome,
    ready_nodes,
    skipped_nodes,
)
from taskgate.workflows.executions.service import (
    CANCELLED,
    EXECUTION_FINAL,
    FAILED,
    QUEUED,
    RUNNING,
    SKIPPED,
    STEP,
    SUCCESS,
    WAITING,
    execution_event,
    finish_execution,
)

# A step job survives this many crashes or database errors; node failures are the node's
# own retries, counted on the step.
STEP_JOB_ATTEMPTS = 5
_GRAPH_CACHE_SIZE = 256
_graphs: OrderedDict[uuid.UUID, Graph] = OrderedDict()

_STATES = {
    RUNNING: StepState.RUNNING,
    WAITING: StepState.WAITING,
    SUCCESS: StepState.SUCCEEDED,
    FAILED: StepState.FAILED,
    SKIPPED: StepState.SKIPPED,
    CANCELLED: StepState.FAILED,
}


async def graph_of(session: AsyncSession, version_id: uuid.UUID) -> Graph:
    """The pinned version's graph; versions never change, so parsed graphs are cached."""
    graph = _graphs.get(version_id)
    if graph is not None:
        _graphs.move_to_end(version_id)
        return graph
    version = await session.get(WorkflowVersion, version_id)
    assert version is not None
    graph = validate_graph(version.graph)
    _graphs[version_id] = graph
    if len(_graphs) > _GRAPH_CACHE_SIZE:
        _graphs.popitem(last=False)
    return graph


async def enqueue_step(
    session: AsyncSession,
    execution_id: uuid.UUID,
    step_id: uuid.UUID,
    *,
    run_after: datetime | None = None,
) -> None:
    await enqueue(
        session,
        STEP,
        {"execution_id": str(execution_id), "step_id": str(step_id)},
        run_after=run_after,
        max_attempts=STEP_JOB_ATTEMPTS,
    )


async def step_event(
    session: AsyncSession,
    execution: WorkflowExecution,
    step: ExecutionStep,
    type: str,
    payload: dict[str, Any] | None = None,
) -> None:
    await record_event(
        session,
        type,
        owner_id=execution.owner_id,
        project_id=execution.project_id,
        execution_id=execution.id,
        workflow_id=execution.workflow_id,
        payload={
            "step_id": str(step.id),
            "node_key": step.node_key,
            "node_type": step.node_type,
            "status": step.status,
            "attempt": step.attempt,
            **(payload or {}),
        },
    )


async def advance(session: AsyncSession, execution: WorkflowExecution) -> None:
    if execution.status in EXECUTION_FINAL:
        return
    graph = await graph_of(session, execution.version_id)
    steps = await repo.steps_of(session, execution.id)
    by_key = {step.node_key: step for step in steps}
    now = utcnow()
    if execution.status == QUEUED:
        execution.status = RUNNING
        execution.started_at = now
        await execution_event(session, execution, "execution.started")
    states = {key: _STATES.get(step.status, StepState.PENDING) for key, step in by_key.items()}
    conditions = {
        key: step.condition_result
        for key, step in by_key.items()
        if step.condition_result is not None
    }
    for node_id in skipped_nodes(graph, states, conditions):
        step = _new_step(execution, graph, node_id, SKIPPED, now)
        step.finished_at = now
        session.add(step)
        steps.append(step)
        states[node_id] = StepState.SKIPPED
        await session.flush()
        await step_event(session, execution, step, "step.skipped")
    # Waiting steps (a delay, an approval) count too: the limit is on steps in progress.
    in_progress = sum(1 for s in states.values() if s in (StepState.RUNNING, StepState.WAITING))
    room = max(0, max_parallel(graph) - in_progress)
    for node_id in ready_nodes(graph, states, conditions)[:room]:
        step = _new_step(execution, graph, node_id, RUNNING, now)
        session.add(step)
        steps.append(step)
        states[node_id] = StepState.RUNNING
        await session.flush()
        await enqueue_step(session, execution.id, step.id)
    await _settle(session, execution, graph, states, steps)


def _new_step(
    execution: WorkflowExecution, graph: Graph, node_id: str, status: str, now: datetime
) -> ExecutionStep:
    return ExecutionStep(
        id=new_id(),
        execution_id=execution.id,
        node_key=node_id,
        node_type=graph.nodes[node_id].type,
        status=status,
        attempt=0,
        created_at=now,
        updated_at=now,
    )


async def _settle(
    session: AsyncSession,
    execution: WorkflowExecution,
    graph: Graph,
    states: dict[str, StepState],
    steps: list[ExecutionStep],
) -> None:
    outcome = execution_outcome(graph, states)
    if outcome == "success":
        await finish_execution(session, execution, steps, SUCCESS)
    elif outcome == "failed":
        failed = sorted(
            (s for s in steps if s.status == FAILED),
            key=lambda s: (s.finished_at or utcnow(), s.node_key),
        )
        first = failed[0] if failed else None
        summary = f"Step '{first.node_key}' failed: {first.error}" if first else "A step failed."
        await finish_execution(session, execution, steps, FAILED, summary[:4000])
    elif outcome == "waiting":
        if execution.status != WAITING:
            execution.status = WAITING
            waiting = sorted(s.node_key for s in steps if s.status == WAITING)
            await execution_event(session, execution, "execution.waiting", {"steps": waiting})
    elif execution.status == WAITING:
        execution.status = RUNNING
        await execution_event(session, execution, "execution.resumed")
