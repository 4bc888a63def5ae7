"""What runs next in a workflow execution: pure functions of the graph and the step states.

Rules:

- An edge is *live* when its parent succeeded and, for a ``condition`` edge, the parent's
  result matches the edge's label. It is *dead* when its parent was skipped, or the result
  does not match. Otherwise (parent pending, running, waiting or failed) it is *open*.
- A pending node is **ready** when none of its incoming edges is open and at least one is
  live (a root is ready at once). So a join after a condition runs when the taken branch
  has finished, even though the other branch was skipped.
- A pending node is **skipped** when every incoming edge is dead; skips cascade down.
- Fail fast: once a step has failed (final; a step between retry attempts stays
  ``running``), nothing new is ready. Steps already running finish; waiting steps are the
  caller's to cancel. The descendants of a failed step stay ``pending``.
- A node missing from ``states`` is ``pending``. A ``condition`` node that succeeded must
  have its result in ``condition_results``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Literal

from taskgate.workflows.definitions.graph import Edge, Graph

Outcome = Literal["running", "success", "failed", "waiting"]


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    WAITING = "waiting"


_FINISHED = frozenset({StepState.SUCCEEDED, StepState.SKIPPED})
_EdgeStatus = Literal["live", "dead", "open"]


def _edge_status(
    edge: Edge, states: Mapping[str, StepState], condition_results: Mapping[str, bool]
) -> _EdgeStatus:
    parent = states.get(edge.source, StepState.PENDING)
    if parent == StepState.SKIPPED:
        return "dead"
    if parent != StepState.SUCCEEDED:
        return "open"
    if edge.condition is None:
        return "live"
    if edge.source not in condition_results:
        raise ValueError(f"condition node '{edge.source}' succeeded without a result")
    taken = "true" if condition_results[edge.source] else "false"
    return "live" if edge.condition == taken else "dead"


def _with_skips(
    graph: Graph, states: Mapping[str, StepState], condition_results: Mapping[str, bool]
) -> tuple[dict[str, StepState], list[str]]:
    """``states`` with the cascade of skips applied, and the nodes newly skipped."""
    effective = {node_id: states.get(node_id, StepState.PENDING) for node_id in graph.nodes}
    skipped: list[str] = []
    for node_id in graph.topological_order():
        edges = graph.incoming(node_id)
        if effective[node_id] != StepState.PENDING or not edges:
            continue
        if all(_edge_status(e, effective, condition_results) == "dead" for e in edges):
            effective[node_id] = StepState.SKIPPED
            skipped.append(node_id)
    return effective, skipped


def skipped_nodes(
    graph: Graph, states: Mapping[str, StepState], condition_results: Mapping[str, bool]
) -> list[str]:
    """Pending nodes that will never run, descendants included, in topological order."""
    return _with_skips(graph, states, condition_results)[1]


def ready_nodes(
    graph: Graph, states: Mapping[str, StepState], condition_results: Mapping[str, bool]
) -> list[str]:
    """Pending nodes that may start now, in topological order (skips already accounted)."""
    if any(state == StepState.FAILED for state in states.values()):
        return []
    effective, _ = _with_skips(graph, states, condition_results)
    ready: list[str] = []
    for node_id in graph.topological_order():
        if effective[node_id] != StepState.PENDING:
            continue
        statuses = [_edge_status(e, effective, condition_results) for e in graph.incoming(node_id)]
        if "open" not in statuses and (not statuses or "live" in statuses):
            ready.append(node_id)
    return ready


def execution_outcome(graph: Graph, states: Mapping[str, StepState]) -> Outcome:
    """Where the execution stands.

    ``running`` while a step runs or some pending step can be decided (started or skipped);
    ``failed`` once a step failed and nothing runs any more; ``success`` when every node
    succeeded or was skipped; ``waiting`` when only waiting steps (approval, delay) hold it.
    """
    current = {node_id: states.get(node_id, StepState.PENDING) for node_id in graph.nodes}
    values = set(current.values())
    if StepState.RUNNING in values:
        return "running"
    if StepState.FAILED in values:
        return "failed"
    if values <= _FINISHED:
        return "success"
    for node_id, state in current.items():
        if state == StepState.PENDING and all(
            current[parent] in _FINISHED for parent in graph.parents(node_id)
        ):
            return "running"
    if StepState.WAITING in values:
        return "waiting"
    return "running"  # not reachable in a DAG: some pending node always has finished parents
