from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import ValidationError

from taskgate.workflows.definitions.graph import Graph, GraphError, graph_to_json
from taskgate.workflows.definitions.graph_validation import MAX_EDGES, MAX_NODES, validate_graph
from taskgate.workflows.definitions.node_types import (
    NODE_TYPES,
    RetryPolicy,
    canonical_type,
    validate_config,
)


def log(node_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "log", "config": {"message": f"at {node_id}"}, **extra}


def condition(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "condition", "config": {"expression": "input.n > 1"}}


def problems_of(raw: Any) -> list[tuple[str, str]]:
    with pytest.raises(GraphError) as caught:
        validate_graph(raw)
    return caught.value.problems


def test_django_automate_body_is_accepted_as_written() -> None:
    graph = validate_graph(
        {
            "nodes": [
                {"id": "start", "type": "logging", "config": {"msg": "got {{ event.payload }}"}},
                {"id": "notify", "type": "log", "config": {"message": "done"}, "next": []},
            ],
            "edges": [{"from": "start", "to": "notify"}],
        }
    )

    assert graph.nodes["start"].type == "log"
    assert graph.nodes["start"].config == {"message": "got {{ event.payload }}", "level": "info"}
    assert graph.children("start") == ("notify",)
    assert graph.parents("notify") == ("start",)


def test_next_lists_on_nodes_become_edges() -> None:
    graph = validate_graph({"nodes": [log("a", next=["b", "c"]), log("b"), log("c")]})

    assert graph.children("a") == ("b", "c")
    assert graph.roots() == ("a",)


def test_topological_order_puts_parents_first_and_keeps_declaration_order() -> None:
    graph = validate_graph(
        {
            "nodes": [log("join"), log("right"), log("left"), log("root")],
            "edges": [
                {"from": "root", "to": "left"},
                {"from": "root", "to": "right"},
                {"from": "left", "to": "join"},
                {"from": "right", "to": "join"},
            ],
        }
    )

    assert graph.topological_order() == ("root", "right", "left", "join")


def test_json_round_trip_gives_the_same_graph() -> None:
    raw = {
        "nodes": [
            {"id": "check", "type": "condition", "config": {"expression": "input.n > 1"}},
            {
                "id": "call",
                "type": "http.request",
                "name": "Call the API",
                "config": {"url": "https://example.com/{{ input.id }}", "json": {"a": 1}},
                "retries": {"max_attempts": 3, "backoff_seconds": 2},
                "timeout_seconds": 30,
            },
        ],
        "edges": [{"from": "check", "to": "call", "condition": True}],
        "config": {"name": "demo"},
    }
    graph = validate_graph(raw)
    body = graph_to_json(graph)

    assert validate_graph(body) == graph
    assert body["edges"] == [{"from": "check", "to": "call", "condition": "true"}]
    assert body["nodes"][1]["config"]["json"] == {"a": 1}
    assert body["nodes"][1]["retries"] == {"max_attempts": 3, "backoff_seconds": 2.0}
    assert body["config"] == {"name": "demo"}


def test_node_options_are_read_from_the_node_object() -> None:
    graph = validate_graph(
        {"nodes": [log("a", retries={"max_attempts": 4}, timeout_seconds=5, name="First")]}
    )
    node = graph.nodes["a"]

    assert node.retries == RetryPolicy(max_attempts=4, backoff_seconds=1.0)
    assert node.timeout_seconds == 5.0
    assert node.name == "First"


def test_graph_cannot_be_changed_after_validation() -> None:
    graph = validate_graph({"nodes": [log("a")]})

    with pytest.raises(dataclasses.FrozenInstanceError):
        graph.edges = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        graph.nodes["b"] = graph.nodes["a"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("raw", "path", "words"),
    [
        ([], "graph", "object"),
        ({"edges": []}, "graph.nodes", "non-empty"),
        ({"nodes": []}, "graph.nodes", "non-empty"),
        ({"nodes": [log("a")], "extra": 1}, "graph.extra", "unknown field"),
        ({"nodes": ["a"]}, "graph.nodes[0]", "object"),
        ({"nodes": [log("")]}, "graph.nodes[0].id", "1-64"),
        ({"nodes": [log("x" * 65)]}, "graph.nodes[0].id", "1-64"),
        ({"nodes": [log("a b")]}, "graph.nodes[0].id", "1-64"),
        ({"nodes": [log("a"), log("a")]}, "graph.nodes[1].id", "'a' is already used"),
        ({"nodes": [{"id": "a", "type": "smtp"}]}, "graph.nodes[0].type", "'smtp'"),
        ({"nodes": [{"id": "a", "config": {}}]}, "graph.nodes[0].type", "required"),
        ({"nodes": [log("a", retry=3)]}, "graph.nodes[0].retry", "unknown field"),
        (
            {"nodes": [log("a", retries={"max_attempts": 11})]},
            "graph.nodes[0].retries.max_attempts",
            "node 'a'",
        ),
        ({"nodes": [log("a", timeout_seconds=0)]}, "graph.nodes[0].timeout_seconds", "node 'a'"),
        ({"nodes": [log("a", timeout_seconds=True)]}, "graph.nodes[0].timeout_seconds", "node 'a'"),
        ({"nodes": [log("a", next="b")]}, "graph.nodes[0].next", "list"),
        ({"nodes": [log("a", next=["zz"])]}, "graph.nodes[0].next[0]", "'zz'"),
        ({"nodes": [log("a")], "edges": {}}, "graph.edges", "list"),
        ({"nodes": [log("a")], "edges": [{"from": "a", "to": "zz"}]}, "graph.edges[0].to", "'zz'"),
        (
            {"nodes": [log("a")], "edges": [{"from": "zz", "to": "a"}]},
            "graph.edges[0].from",
            "'zz'",
        ),
        ({"nodes": [log("a")], "edges": [{"to": "a"}]}, "graph.edges[0].from", "needs"),
        ({"nodes": [log("a")], "edges": [{"from": "a", "to": "a"}]}, "graph.edges[0]", "itself"),
        (
            {"nodes": [log("a"), log("b")], "edges": [{"from": "a", "to": "b", "id": "e1"}]},
            "graph.edges[0].id",
            "unknown field",
        ),
        (
            {"nodes": [log("a"), log("b")], "edges": [{"from": "a", "to": "b"}] * 2},
            "graph.edges[1]",
            "already declared at graph.edges[0]",
        ),
    ],
)
def test_structural_problems_point_at_the_field(raw: Any, path: str, words: str) -> None:
    problems = problems_of(raw)

    assert any(p == path and words in m for p, m in problems), problems


@pytest.mark.parametrize(
    ("node", "path", "words"),
    [
        ({"type": "log", "config": {}}, "config.message", "message is required"),
        (
            {"type": "log", "config": {"message": "x", "colour": 1}},
            "config.colour",
            "unknown field",
        ),
        ({"type": "log", "config": {"message": "x", "level": "loud"}}, "config.level", "'info'"),
        ({"type": "log", "config": "hello"}, "config", "object"),
        ({"type": "http.request", "config": {"url": "ftp://x"}}, "config.url", "http"),
        (
            {"type": "http.request", "config": {"url": "https://x", "headers": {"X-N": 1}}},
            "config.headers.X-N",
            "string",
        ),
        (
            {"type": "http.request", "config": {"url": "https://x", "timeout_seconds": 61}},
            "config.timeout_seconds",
            "60",
        ),
        (
            {"type": "http.request", "config": {"url": "https://x", "body": "a", "json": {}}},
            "config",
            "either body or json",
        ),
        ({"type": "task", "config": {"query": "q", "commands": ["ls"]}}, "config", "exactly one"),
        ({"type": "task", "config": {"commands": []}}, "config.commands", "at least 1"),
        ({"type": "task", "config": {"commands": ["ls"] * 51}}, "config.commands", "at most 50"),
        (
            {"type": "task", "config": {"script": {"language": "ruby", "content": "x"}}},
            "config.script.language",
            "'bash'",
        ),
        ({"type": "task", "config": {"query": "q", "labels": 3}}, "config.labels", "list"),
        (
            {"type": "task", "config": {"query": "q", "labels": ["x" * 65]}},
            "config.labels[0]",
            "64",
        ),
        ({"type": "delay", "config": {"seconds": 86_401}}, "config.seconds", "86400"),
        ({"type": "delay", "config": {"seconds": "soon"}}, "config.seconds", "template"),
        ({"type": "condition", "config": {"expression": "a >"}}, "config.expression", "node 'n'"),
        ({"type": "notify", "config": {"message": "hi"}}, "config.destination_id", "required"),
        ({"type": "transform", "config": {}}, "config.template", "required"),
        (
            {"type": "llm.prompt", "config": {"prompt": "p", "max_tokens": 0}},
            "config.max_tokens",
            "1",
        ),
        ({"type": "approval", "config": {}}, "config.message", "required"),
    ],
)
def test_config_problems_carry_the_field_path_and_the_node_id(
    node: dict[str, Any], path: str, words: str
) -> None:
    problems = problems_of({"nodes": [{"id": "n", **node}]})

    assert any(p == f"graph.nodes[0].{path}" and words in m for p, m in problems), problems
    assert all("node 'n'" in m for _, m in problems)


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(
        {
            "nodes": [log("a"), {"id": "b", "type": "nope"}, {"id": "c", "type": "log"}],
            "edges": [{"from": "a", "to": "missing"}],
        }
    )

    assert [p for p, _ in problems] == [
        "graph.nodes[1].type",
        "graph.nodes[2].config.message",
        "graph.edges[0].to",
    ]


def test_a_template_that_does_not_compile_is_reported_at_save_time() -> None:
    problems = problems_of(
        {
            "nodes": [
                {
                    "id": "call",
                    "type": "http.request",
                    "config": {"url": "https://x", "headers": {"A": "{{ secrets.token "}},
                }
            ]
        }
    )

    assert problems[0][0] == "graph.nodes[0].config.headers.A"
    assert "node 'call'" in problems[0][1]


def test_a_broken_condition_expression_is_reported_once() -> None:
    problems = problems_of(
        {"nodes": [{"id": "c", "type": "condition", "config": {"expression": "{{ a > }}"}}]}
    )

    assert [p for p, _ in problems] == ["graph.nodes[0].config.expression"]


def test_a_cycle_is_reported_with_its_node_ids() -> None:
    problems = problems_of(
        {
            "nodes": [log("a"), log("b"), log("c"), log("d")],
            "edges": [
                {"from": "a", "to": "b"},
                {"from": "b", "to": "c"},
                {"from": "c", "to": "d"},
                {"from": "d", "to": "b"},
            ],
        }
    )

    assert problems == [("graph.edges[3]", "the edges form a cycle: b → c → d → b")]


def test_condition_labels_are_true_or_false_and_only_leave_condition_nodes() -> None:
    graph = validate_graph(
        {
            "nodes": [condition("check"), log("yes"), log("no"), log("always")],
            "edges": [
                {"from": "check", "to": "yes", "condition": "TRUE"},
                {"from": "check", "to": "no", "condition": False},
                {"from": "check", "to": "always"},
            ],
        }
    )
    assert [e.condition for e in graph.outgoing("check")] == ["true", "false", None]

    problems = problems_of(
        {
            "nodes": [condition("check"), log("a"), log("b")],
            "edges": [
                {"from": "check", "to": "a", "condition": "maybe"},
                {"from": "a", "to": "b", "condition": "true"},
            ],
        }
    )
    assert problems[0] == ("graph.edges[0].condition", problems[0][1])
    assert '"true" or "false"' in problems[0][1]
    assert problems[1][0] == "graph.edges[1].condition"
    assert "'a' is a log node" in problems[1][1]


def test_size_limits() -> None:
    too_many_nodes = {"nodes": [log(f"n{i}") for i in range(MAX_NODES + 1)]}
    assert problems_of(too_many_nodes)[0][0] == "graph.nodes"

    nodes = [log(f"n{i}") for i in range(50)]
    edges = [{"from": f"n{i}", "to": f"n{j}"} for i in range(50) for j in range(i + 1, 50)]
    assert len(edges) > MAX_EDGES
    assert problems_of({"nodes": nodes, "edges": edges}) == [
        ("graph.edges", f"a graph has at most {MAX_EDGES} edges ({len(edges)})")
    ]


def test_graph_error_message_summarises_the_problems() -> None:
    with pytest.raises(GraphError) as caught:
        validate_graph({"nodes": [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}]})

    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith("graph.nodes[0].type: node 'a': type is required")
    assert str(caught.value).endswith("(and 1 more)")


def test_node_type_names_and_aliases() -> None:
    assert canonical_type("logging") == "log"
    assert canonical_type("http.request") == "http.request"
    assert set(NODE_TYPES) == {
        "log",
        "http.request",
        "task",
        "llm.prompt",
        "condition",
        "transform",
        "delay",
        "approval",
        "notify",
    }
    with pytest.raises(ValueError, match="unknown node type 'smtp'"):
        canonical_type("smtp")


def test_validate_config_fills_defaults_and_accepts_rendered_values() -> None:
    assert validate_config("http.request", {"url": "https://x", "method": "post"}) == {
        "url": "https://x",
        "method": "POST",
        "headers": {},
        "body": None,
        "json": None,
        "timeout_seconds": 10.0,
        "expect_status": None,
    }
    assert validate_config("delay", {"seconds": "{{ input.wait }}"}) == {
        "seconds": "{{ input.wait }}"
    }
    assert validate_config("delay", {"seconds": "90"}) == {"seconds": 90.0}
    assert validate_config("log", {"msg": "x", "level": "WARN"})["level"] == "warning"
    task = validate_config("task", {"script": {"language": "bash", "content": "ls"}})
    assert task["script"] == {"language": "bash", "content": "ls"}
    with pytest.raises(ValidationError):
        validate_config("http.request", {"url": "{{ input.url }}", "timeout_seconds": 0})


def test_retry_backoff_doubles_up_to_an_hour() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_seconds=2)

    assert [policy.delay_before(n) for n in (1, 2, 3, 4)] == [0.0, 2.0, 4.0, 8.0]
    assert RetryPolicy(backoff_seconds=3000).delay_before(3) == 3600.0


def test_graph_is_a_value() -> None:
    raw = {"nodes": [log("a"), log("b")], "edges": [{"from": "a", "to": "b"}]}

    assert validate_graph(raw) == validate_graph(raw)
    assert isinstance(validate_graph(raw), Graph)
