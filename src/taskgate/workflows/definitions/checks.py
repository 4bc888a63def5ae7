"""Checks a workflow body passes before it is saved: graph, templates, trigger config."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import Environment, nodes

from taskgate.destinations.matching import pattern_problem
from taskgate.errors import FieldProblem, ValidationFailed
from taskgate.workflows.definitions.graph import Graph, GraphError
from taskgate.workflows.definitions.graph_validation import validate_graph
from taskgate.workflows.definitions.templating import is_template

MAX_PARALLEL_LIMIT = 32
DEFAULT_MAX_PARALLEL = 8
TRIGGER_FILTER_FIELDS = frozenset({"id", "type", "source", "payload"})
_DUNDER = re.compile(r"^__\w*__$")
# Only for reading the structure of a template; rendering uses the sandbox in ``templating``.
_PARSER = Environment(autoescape=True)


def check_graph(raw: Any) -> Graph:
    """Validate a graph body; every problem comes back as a 400 detail naming node and field."""
    try:
        graph = validate_graph(raw)
    except GraphError as exc:
        details = [FieldProblem(path, message) for path, message in exc.problems]
        raise ValidationFailed("The workflow graph is not valid.", details=details) from exc
    problems = list(_unsafe_templates(raw))
    max_parallel = graph.config.get("max_parallel")
    if max_parallel is not None and not (
        isinstance(max_parallel, int)
        and not isinstance(max_parallel, bool)
        and 1 <= max_parallel <= MAX_PARALLEL_LIMIT
    ):
        problems.append(
            FieldProblem(
                "graph.config.max_parallel", f"must be an integer from 1 to {MAX_PARALLEL_LIMIT}"
            )
        )
    if problems:
        raise ValidationFailed("The workflow graph is not valid.", details=problems)
    return graph


def max_parallel(graph: Graph) -> int:
    value = graph.config.get("max_parallel")
    return value if isinstance(value, int) else DEFAULT_MAX_PARALLEL


def _unsafe_templates(raw: Mapping[str, Any]) -> Iterator[FieldProblem]:
    """Refuse, at save time, templates that reach for Python internals (``__class__``...).

    The sandbox refuses them at render time anyway; this only makes the mistake (or the
    attack) visible when the workflow is written rather than when it runs.
    """
    for index, node in enumerate(raw.get("nodes") or []):
        if not isinstance(node, Mapping):
            continue
        label = f"node '{node.get('id')}'"
        is_condition = node.get("type") == "condition"
        for path, text in _strings(node.get("config"), f"graph.nodes[{index}].config"):
            bare = is_condition and path.endswith(".expression") and not is_template(text)
            if not bare and not is_template(text):
                continue
            name = _dunder_in(f"{{{{ {text} }}}}" if bare else text)
            if name is not None:
                yield FieldProblem(
                    path, f"{label}: unsafe template: access to {name!r} is not allowed"
                )


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _dunder_in(source: str) -> str | None:
    try:
        tree = _PARSER.parse(source)
    except Exception:
        return None  # a syntax error is reported by the graph validation
    for found in tree.find_all((nodes.Getattr, nodes.Const, nodes.Name)):
        if isinstance(found, nodes.Getattr):
            name = found.attr
        elif isinstance(found, nodes.Name):
            name = found.name
        else:
            value = getattr(found, "value", None)
            name = value if isinstance(value, str) else ""
        if _DUNDER.match(name) or (isinstance(found, nodes.Getattr) and name == "mro"):
            return name
    return None


def check_trigger(trigger_type: str, config: Mapping[str, Any]) -> None:
    """``event``: ``{event_type, filter?}``; ``webhook``: ``{source?, event_type?, filter?}``.

    ``event_type`` is an exact type, a prefix such as ``order.*``, or ``*``. ``filter``
    matches the event document ``{id, type, source, payload}`` (a subset match).
    """
    problems: list[FieldProblem] = []
    if trigger_type in ("event", "webhook"):
        event_type = config.get("event_type")
        if event_type is None and trigger_type == "event":
            problems.append(FieldProblem("trigger_config.event_type", "is required"))
        elif event_type is not None:
            message = (
                pattern_problem(event_type) if isinstance(event_type, str) else "must be a string"
            )
            if message:
                problems.append(FieldProblem("trigger_config.event_type", message))
        source = config.get("source")
        if source is not None and not (isinstance(source, str) and 0 < len(source) <= 100):
            problems.append(FieldProblem("trigger_config.source", "must be a webhook source slug"))
        event_filter = config.get("filter")
        if event_filter is not None:
            if not isinstance(event_filter, Mapping):
                problems.append(FieldProblem("trigger_config.filter", "must be an object"))
            else:
                allowed = ", ".join(sorted(TRIGGER_FILTER_FIELDS))
                problems += [
                    FieldProblem(f"trigger_config.filter.{key}", f"unknown field ({allowed})")
                    for key in event_filter
                    if key not in TRIGGER_FILTER_FIELDS
                ]
    if problems:
        raise ValidationFailed("The trigger configuration is not valid.", details=problems)
