"""A validated workflow graph: nodes, edges, and the order they run in.

``graph_validation.validate_graph`` builds one from a request body; ``graph_to_json`` turns
it back into a body.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from taskgate.workflows.definitions.node_types import RetryPolicy

EdgeCondition = Literal["true", "false"]


class GraphError(ValueError):
    """An invalid graph; ``problems`` lists ``(field path, message)`` pairs."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        shown = "; ".join(f"{path}: {message}" for path, message in self.problems[:3])
        more = len(self.problems) - 3
        super().__init__(shown + (f" (and {more} more)" if more > 0 else ""))


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    type: str
    config: Mapping[str, Any]
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_seconds: float | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    condition: EdgeCondition | None = None


@dataclass(frozen=True)
class Graph:
    """A validated DAG. Build it with ``validate_graph``."""

    nodes: Mapping[str, Node]
    edges: tuple[Edge, ...]
    config: Mapping[str, Any] = field(default_factory=dict)
    _incoming: Mapping[str, tuple[Edge, ...]] = field(init=False, repr=False, compare=False)
    _outgoing: Mapping[str, tuple[Edge, ...]] = field(init=False, repr=False, compare=False)
    _order: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        incoming: dict[str, list[Edge]] = {node_id: [] for node_id in self.nodes}
        outgoing: dict[str, list[Edge]] = {node_id: [] for node_id in self.nodes}
        for edge in self.edges:
            outgoing[edge.source].append(edge)
            incoming[edge.target].append(edge)
        object.__setattr__(self, "nodes", MappingProxyType(dict(self.nodes)))
        object.__setattr__(self, "_incoming", {k: tuple(v) for k, v in incoming.items()})
        object.__setattr__(self, "_outgoing", {k: tuple(v) for k, v in outgoing.items()})
        object.__setattr__(self, "_order", _topological_order(list(self.nodes), self.edges))

    def parents(self, node_id: str) -> tuple[str, ...]:
        return tuple(edge.source for edge in self._incoming[node_id])

    def children(self, node_id: str) -> tuple[str, ...]:
        return tuple(edge.target for edge in self._outgoing[node_id])

    def incoming(self, node_id: str) -> tuple[Edge, ...]:
        return self._incoming[node_id]

    def outgoing(self, node_id: str) -> tuple[Edge, ...]:
        return self._outgoing[node_id]

    def roots(self) -> tuple[str, ...]:
        return tuple(node_id for node_id in self._order if not self._incoming[node_id])

    def topological_order(self) -> tuple[str, ...]:
        """Parents before children; ties keep the order the nodes were declared in."""
        return self._order


def _topological_order(node_ids: list[str], edges: Sequence[Edge]) -> tuple[str, ...]:
    position = {node_id: index for index, node_id in enumerate(node_ids)}
    indegree = dict.fromkeys(node_ids, 0)
    children: dict[str, list[str]] = {node_id: [] for node_id in node_ids}
    for edge in edges:
        indegree[edge.target] += 1
        children[edge.source].append(edge.target)
    heap = [position[n] for n in node_ids if indegree[n] == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        node_id = node_ids[heapq.heappop(heap)]
        order.append(node_id)
        for child in children[node_id]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(heap, position[child])
    if len(order) != len(node_ids):
        raise ValueError("the edges form a cycle")
    return tuple(order)


def graph_to_json(graph: Graph) -> dict[str, Any]:
    """The graph as a body ``validate_graph`` accepts again (types canonical, defaults filled)."""
    nodes: list[dict[str, Any]] = []
    for node in graph.nodes.values():
        item: dict[str, Any] = {"id": node.id, "type": node.type, "config": dict(node.config)}
        if node.name is not None:
            item["name"] = node.name
        if node.retries != RetryPolicy():
            item["retries"] = node.retries.model_dump(mode="json")
        if node.timeout_seconds is not None:
            item["timeout_seconds"] = node.timeout_seconds
        nodes.append(item)
    edges: list[dict[str, Any]] = []
    for edge in graph.edges:
        body: dict[str, Any] = {"from": edge.source, "to": edge.target}
        if edge.condition is not None:
            body["condition"] = edge.condition
        edges.append(body)
    result: dict[str, Any] = {"nodes": nodes, "edges": edges}
    if graph.config:
        result["config"] = dict(graph.config)
    return result
