"""Validation of workflow graphs (Django Automate's body shape) into a frozen ``Graph``.

Body: ``{"nodes": [{"id", "type", "config", "name"?, "retries"?, "timeout_seconds"?,
"next"?}], "edges": [{"from", "to", "condition"?}], "config"?}``.

- ``next: ["id", ...]`` on a node (Django Automate's older form) adds plain edges.
- An edge's ``condition`` is ``"true"`` or ``"false"`` (JSON booleans are accepted and
  stored as those strings) and may appear only on an edge leaving a ``condition`` node. An
  edge without one leaving a ``condition`` node is followed whatever the result.
- Every string in a config is a template; a template that does not compile is a problem of
  the graph, reported at save time with its path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from taskgate.workflows.definitions.config_problems import config_problems
from taskgate.workflows.definitions.graph import Edge, EdgeCondition, Graph, GraphError, Node
from taskgate.workflows.definitions.node_types import (
    MAX_NODE_TIMEOUT_SECONDS,
    NODE_TYPES,
    RetryPolicy,
    canonical_type,
)
from taskgate.workflows.definitions.templating import (
    MAX_DEPTH,
    TemplateError,
    check_expression,
    check_template,
    is_template,
    nested_too_deeply,
)

MAX_NODES = 200
MAX_EDGES = 1000
MAX_PROBLEMS = 100
NODE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_GRAPH_FIELDS = ("nodes", "edges", "config")
_NODE_FIELDS = ("id", "type", "config", "name", "retries", "timeout_seconds", "next")
_EDGE_FIELDS = ("from", "to", "condition")


@dataclass(slots=True)
class _EdgeSpec:
    path: str
    source: Any
    target: Any
    condition: Any
    source_field: str | None  # where to report a bad source; None for ``next`` entries
    target_field: str


class _Validator:
    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.nodes: dict[str, Node] = {}
        self.declared: dict[str, int] = {}  # every well-formed id, valid node or not
        self.types: dict[str, str] = {}
        self.edge_specs: list[_EdgeSpec] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def fail(self) -> GraphError:
        problems = self.problems
        if len(problems) > MAX_PROBLEMS:
            extra = len(problems) - MAX_PROBLEMS
            problems = [*problems[:MAX_PROBLEMS], ("graph", f"and {extra} more problems")]
        return GraphError(problems)

    # nodes

    def node(self, index: int, raw: Any) -> None:
        path = f"graph.nodes[{index}]"
        if not isinstance(raw, Mapping):
            self.add(path, "must be an object with id, type and config")
            return
        node_id = self._node_id(index, raw.get("id"))
        label = f"node '{node_id}'" if node_id else f"node #{index}"
        ok = node_id is not None
        for key in raw:
            if key not in _NODE_FIELDS:
                ok = False
                self.add(
                    f"{path}.{key}", f"{label}: unknown field (allowed: {_list(_NODE_FIELDS)})"
                )
        node_type = self._node_type(path, label, raw.get("type"))
        if node_id is not None and node_type is not None:
            self.types[node_id] = node_type
        config = self._config(path, label, node_type, raw.get("config"))
        retries = self._retries(path, label, raw.get("retries"))
        timeout = self._timeout(path, label, raw.get("timeout_seconds"))
        name = raw.get("name")
        if name is not None and not (isinstance(name, str) and len(name) <= 200):
            ok = False
            self.add(f"{path}.name", f"{label}: must be a string of at most 200 characters")
        self._next(path, label, node_id, raw.get("next"))
        if (
            ok
            and node_id is not None
            and node_type is not None
            and config is not None
            and retries is not None
            and timeout is not False
        ):
            self.nodes[node_id] = Node(
                id=node_id,
                type=node_type,
                config=config,
                retries=retries,
                timeout_seconds=timeout,
                name=name,
            )

    def _node_id(self, index: int, node_id: Any) -> str | None:
        path = f"graph.nodes[{index}]"
        if not isinstance(node_id, str) or not NODE_ID.fullmatch(node_id):
            self.add(
                f"{path}.id",
                "node id must be 1-64 characters of letters, digits, '_', '.' or '-'",
            )
            return None
        if node_id in self.declared:
            first = self.declared[node_id]
            self.add(f"{path}.id", f"node id '{node_id}' is already used by graph.nodes[{first}]")
            return None
        self.declared[node_id] = index
        return node_id

    def _node_type(self, path: str, label: str, raw_type: Any) -> str | None:
        if not isinstance(raw_type, str):
            self.add(f"{path}.type", f"{label}: type is required")
            return None
        try:
            return canonical_type(raw_type)
        except ValueError as exc:
            self.add(f"{path}.type", f"{label}: {exc}")
            return None

    def _config(
        self, path: str, label: str, node_type: str | None, raw: Any
    ) -> dict[str, Any] | None:
        raw = {} if raw is None else raw
        if not isinstance(raw, Mapping):
            self.add(f"{path}.config", f"{label}: config must be an object")
            return None
        if node_type is None:
            return None
        if nested_too_deeply(raw):
            # Rendering refuses it anyway; pydantic would fail to copy it (a 500) first.
            self.add(f"{path}.config", f"{label}: config is nested more than {MAX_DEPTH} deep")
            return None
        model = NODE_TYPES[node_type]
        try:
            config = model.model_validate(raw).model_dump(mode="json", by_alias=True)
        except ValidationError as exc:
            self._config_problems(f"{path}.config", label, model, exc, raw)
            return None
        before = len(self.problems)
        if node_type == "condition":
            try:
                check_expression(config["expression"])
            except TemplateError as exc:
                self.add(f"{path}.config.expression", f"{label}: {exc.message}")
        else:
            self._templates(f"{path}.config", label, config)
        return config if len(self.problems) == before else None

    def _templates(self, path: str, label: str, value: Any) -> None:
        if isinstance(value, str):
            if is_template(value):
                try:
                    check_template(value)
                except TemplateError as exc:
                    self.add(path, f"{label}: {exc.message}")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                self._templates(f"{path}.{key}", label, item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self._templates(f"{path}[{index}]", label, item)

    def _config_problems(
        self, path: str, label: str, model: type[BaseModel], exc: ValidationError, data: Any
    ) -> None:
        for where, message in config_problems(path, model, exc, data):
            self.add(where, f"{label}: {message}")

    def _retries(self, path: str, label: str, raw: Any) -> RetryPolicy | None:
        if raw is None:
            return RetryPolicy()
        try:
            return RetryPolicy.model_validate(raw)
        except ValidationError as exc:
            self._config_problems(f"{path}.retries", label, RetryPolicy, exc, raw)
            return None

    def _timeout(self, path: str, label: str, raw: Any) -> float | Literal[False] | None:
        if raw is None:
            return None
        if (
            isinstance(raw, int | float)
            and not isinstance(raw, bool)
            and 0 < raw <= MAX_NODE_TIMEOUT_SECONDS
        ):
            return float(raw)
        self.add(
            f"{path}.timeout_seconds",
            f"{label}: must be a number of seconds above 0 and at most {MAX_NODE_TIMEOUT_SECONDS}",
        )
        return False

    def _next(self, path: str, label: str, node_id: str | None, raw: Any) -> None:
        if raw is None:
            return
        if not isinstance(raw, list):
            self.add(f"{path}.next", f"{label}: next must be a list of node ids")
            return
        for index, target in enumerate(raw):
            where = f"{path}.next[{index}]"
            self.edge_specs.append(_EdgeSpec(where, node_id, target, None, None, where))

    # edges

    def edge(self, index: int, raw: Any) -> None:
        path = f"graph.edges[{index}]"
        if not isinstance(raw, Mapping):
            self.add(path, "must be an object with from and to")
            return
        for key in raw:
            if key not in _EDGE_FIELDS:
                self.add(f"{path}.{key}", f"unknown field (allowed: {_list(_EDGE_FIELDS)})")
        self.edge_specs.append(
            _EdgeSpec(
                path,
                raw.get("from"),
                raw.get("to"),
                raw.get("condition"),
                f"{path}.from",
                f"{path}.to",
            )
        )

    def resolve_edges(self) -> list[tuple[str, Edge]]:
        if len(self.edge_specs) > MAX_EDGES:
            self.add(
                "graph.edges", f"a graph has at most {MAX_EDGES} edges ({len(self.edge_specs)})"
            )
            return []
        edges: list[tuple[str, Edge]] = []
        seen: dict[tuple[str, str], str] = {}
        for spec in self.edge_specs:
            source = self._endpoint(spec.source, spec.source_field, "from")
            target = self._endpoint(spec.target, spec.target_field, "to")
            if source is None or target is None:
                continue
            name = f"edge '{source}' → '{target}'"
            if source == target:
                self.add(spec.path, f"{name} connects node '{source}' to itself")
                continue
            if (source, target) in seen:
                self.add(spec.path, f"{name} is already declared at {seen[source, target]}")
                continue
            seen[source, target] = spec.path
            condition = self._condition(spec, name, source)
            if condition is not False:
                edges.append((spec.path, Edge(source, target, condition)))
        return edges

    def _endpoint(self, value: Any, where: str | None, side: str) -> str | None:
        if isinstance(value, str) and value in self.declared:
            return value
        if where is not None:
            shown = f"'{value}'" if isinstance(value, str) else "a node id"
            if value is None:
                self.add(where, f"edge needs '{side}': a node id")
            else:
                self.add(where, f"edge {side} unknown node {shown}")
        return None

    def _condition(
        self, spec: _EdgeSpec, name: str, source: str
    ) -> EdgeCondition | Literal[False] | None:
        raw = spec.condition
        if raw is None:
            return None
        value = str(raw).strip().lower() if isinstance(raw, str | bool) else None
        if value not in ("true", "false"):
            self.add(f"{spec.path}.condition", f'{name}: condition must be "true" or "false"')
            return False
        source_type = self.types.get(source)
        if source_type is not None and source_type != "condition":
            self.add(
                f"{spec.path}.condition",
                f"{name}: only an edge leaving a condition node may have a condition "
                f"('{source}' is a {source_type} node)",
            )
            return False
        return "true" if value == "true" else "false"

    def cycles(self, edges: list[tuple[str, Edge]]) -> None:
        children: dict[str, list[tuple[str, str]]] = {node_id: [] for node_id in self.declared}
        for path, edge in edges:
            children[edge.source].append((edge.target, path))
        state = dict.fromkeys(self.declared, 0)  # 0 new, 1 on the stack, 2 done
        reported: set[frozenset[str]] = set()
        for start in self.declared:
            if state[start]:
                continue
            stack: list[tuple[str, int]] = [(start, 0)]
            trail: list[str] = [start]
            state[start] = 1
            while stack:
                node_id, next_child = stack[-1]
                if next_child == len(children[node_id]):
                    stack.pop()
                    trail.pop()
                    state[node_id] = 2
                    continue
                stack[-1] = (node_id, next_child + 1)
                child, path = children[node_id][next_child]
                if state[child] == 1:
                    cycle = [*trail[trail.index(child) :], child]
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        self.add(path, "the edges form a cycle: " + " → ".join(cycle))
                elif state[child] == 0:
                    state[child] = 1
                    stack.append((child, 0))
                    trail.append(child)


def _list(names: Sequence[str]) -> str:
    return ", ".join(names)


def validate_graph(raw: Any) -> Graph:
    """Check a graph body; return the ``Graph`` or raise ``GraphError`` with every problem."""
    if not isinstance(raw, Mapping):
        raise GraphError([("graph", "must be an object with nodes and edges")])
    v = _Validator()
    for key in raw:
        if key not in _GRAPH_FIELDS:
            v.add(f"graph.{key}", f"unknown field (allowed: {_list(_GRAPH_FIELDS)})")
    raw_config = raw.get("config")
    if raw_config is not None and not isinstance(raw_config, Mapping):
        v.add("graph.config", "must be an object")
    raw_nodes = raw.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        v.add("graph.nodes", "must be a non-empty list of nodes")
        raise v.fail()
    if len(raw_nodes) > MAX_NODES:
        v.add("graph.nodes", f"a graph has at most {MAX_NODES} nodes ({len(raw_nodes)})")
        raise v.fail()
    raw_edges = raw.get("edges")
    if raw_edges is not None and not isinstance(raw_edges, list):
        v.add("graph.edges", "must be a list of edges")
        raw_edges = None
    for index, node in enumerate(raw_nodes):
        v.node(index, node)
    for index, edge in enumerate(raw_edges or []):
        v.edge(index, edge)
    edges = v.resolve_edges()
    v.cycles(edges)
    if v.problems:
        raise v.fail()
    return Graph(
        nodes=v.nodes,
        edges=tuple(edge for _, edge in edges),
        config=dict(raw_config or {}),
    )
