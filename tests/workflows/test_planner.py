from __future__ import annotations

from typing import Any

import pytest

from taskgate.workflows.definitions.graph import Graph
from taskgate.workflows.definitions.graph_validation import validate_graph
from taskgate.workflows.engine.planner import (
    StepState,
    execution_outcome,
    ready_nodes,
    skipped_nodes,
)

PENDING = StepState.PENDING
RUNNING = StepState.RUNNING
SUCCEEDED = StepState.SUCCEEDED
FAILED = StepState.FAILED
SKIPPED = StepState.SKIPPED
WAITING = StepState.WAITING


def build(nodes: dict[str, str], edges: list[tuple[str, str] | tuple[str, str, str]]) -> Graph:
    """``nodes``: id → type; ``edges``: (from, to) or (from, to, "true"/"false")."""
    configs: dict[str, dict[str, Any]] = {
        "log": {"message": "x"},
        "condition": {"expression": "input.go"},
        "approval": {"message": "ok?"},
    }
    return validate_graph(
        {
            "nodes": [{"id": n, "type": t, "config": configs[t]} for n, t in nodes.items()],
            "edges": [
                {"from": e[0], "to": e[1], **({"condition": e[2]} if len(e) == 3 else {})}
                for e in edges
            ],
        }
    )


@pytest.fixture
def diamond() -> Graph:
    # root → (left, right) → join
    return build(
        {"root": "log", "left": "log", "right": "log", "join": "log"},
        [("root", "left"), ("root", "right"), ("left", "join"), ("right", "join")],
    )


@pytest.fixture
def branching() -> Graph:
    # check -true→ yes → after_yes ─┐
    # check -false→ no → after_no ──┴→ join
    return build(
        {
            "check": "condition",
            "yes": "log",
            "after_yes": "log",
            "no": "log",
            "after_no": "log",
            "join": "log",
        },
        [
            ("check", "yes", "true"),
            ("yes", "after_yes"),
            ("check", "no", "false"),
            ("no", "after_no"),
            ("after_yes", "join"),
            ("after_no", "join"),
        ],
    )


def test_the_roots_are_ready_first(diamond: Graph) -> None:
    assert ready_nodes(diamond, {}, {}) == ["root"]
    assert execution_outcome(diamond, {}) == "running"


def test_parallel_branches_are_both_ready_after_the_root(diamond: Graph) -> None:
    states = {"root": SUCCEEDED}

    assert ready_nodes(diamond, states, {}) == ["left", "right"]


def test_a_join_waits_for_every_parent(diamond: Graph) -> None:
    assert ready_nodes(diamond, {"root": SUCCEEDED, "left": SUCCEEDED, "right": RUNNING}, {}) == []
    assert ready_nodes(diamond, {"root": SUCCEEDED, "left": SUCCEEDED, "right": SUCCEEDED}, {}) == [
        "join"
    ]


def test_running_and_finished_nodes_are_not_ready_again(diamond: Graph) -> None:
    states = {"root": SUCCEEDED, "left": RUNNING, "right": SUCCEEDED}

    assert ready_nodes(diamond, states, {}) == []
    assert execution_outcome(diamond, states) == "running"


def test_true_branch_runs_and_false_branch_is_skipped_with_its_descendants(
    branching: Graph,
) -> None:
    states = {"check": SUCCEEDED}
    results = {"check": True}

    assert skipped_nodes(branching, states, results) == ["no", "after_no"]
    assert ready_nodes(branching, states, results) == ["yes"]


def test_false_result_takes_the_other_branch(branching: Graph) -> None:
    states = {"check": SUCCEEDED}

    assert skipped_nodes(branching, states, {"check": False}) == ["yes", "after_yes"]
    assert ready_nodes(branching, states, {"check": False}) == ["no"]


def test_a_join_after_a_condition_runs_once_the_taken_branch_is_done(branching: Graph) -> None:
    results = {"check": True}
    states = {
        "check": SUCCEEDED,
        "yes": SUCCEEDED,
        "no": SKIPPED,
        "after_no": SKIPPED,
        "after_yes": RUNNING,
    }
    assert ready_nodes(branching, states, results) == []
    assert skipped_nodes(branching, states, results) == []

    states["after_yes"] = SUCCEEDED
    assert ready_nodes(branching, states, results) == ["join"]

    states["join"] = SUCCEEDED
    assert execution_outcome(branching, states) == "success"


def test_a_join_is_skipped_when_every_branch_into_it_was_skipped() -> None:
    graph = build(
        {"check": "condition", "a": "log", "b": "log", "join": "log", "tail": "log"},
        [
            ("check", "a", "true"),
            ("check", "b", "true"),
            ("a", "join"),
            ("b", "join"),
            ("join", "tail"),
        ],
    )

    assert skipped_nodes(graph, {"check": SUCCEEDED}, {"check": False}) == [
        "a",
        "b",
        "join",
        "tail",
    ]
    assert ready_nodes(graph, {"check": SUCCEEDED}, {"check": False}) == []


def test_an_unlabelled_edge_out_of_a_condition_is_always_followed() -> None:
    graph = build(
        {"check": "condition", "yes": "log", "audit": "log"},
        [("check", "yes", "true"), ("check", "audit")],
    )

    assert ready_nodes(graph, {"check": SUCCEEDED}, {"check": False}) == ["audit"]
    assert skipped_nodes(graph, {"check": SUCCEEDED}, {"check": False}) == ["yes"]


def test_a_skipped_condition_skips_both_of_its_branches() -> None:
    graph = build(
        {"start": "condition", "check": "condition", "yes": "log", "no": "log"},
        [("start", "check", "true"), ("check", "yes", "true"), ("check", "no", "false")],
    )

    assert skipped_nodes(graph, {"start": SUCCEEDED}, {"start": False}) == ["check", "yes", "no"]


def test_a_condition_that_succeeded_without_a_result_is_a_caller_bug(branching: Graph) -> None:
    with pytest.raises(ValueError, match="'check' succeeded without a result"):
        ready_nodes(branching, {"check": SUCCEEDED}, {})


def test_nothing_new_starts_after_a_failure(diamond: Graph) -> None:
    states = {"root": SUCCEEDED, "left": FAILED, "right": RUNNING}

    assert ready_nodes(diamond, states, {}) == []
    assert skipped_nodes(diamond, states, {}) == []
    assert execution_outcome(diamond, states) == "running"

    states["right"] = SUCCEEDED
    assert ready_nodes(diamond, states, {}) == []
    assert execution_outcome(diamond, states) == "failed"


def test_a_failure_fails_the_execution_even_with_an_approval_waiting() -> None:
    graph = build(
        {"root": "log", "approve": "approval", "work": "log"},
        [("root", "approve"), ("root", "work")],
    )
    states = {"root": SUCCEEDED, "approve": WAITING, "work": FAILED}

    assert execution_outcome(graph, states) == "failed"


def test_an_execution_waits_when_only_a_waiting_step_holds_it() -> None:
    graph = build(
        {"root": "log", "approve": "approval", "after": "log", "side": "log"},
        [("root", "approve"), ("approve", "after"), ("root", "side")],
    )

    states = {"root": SUCCEEDED, "approve": WAITING}
    assert ready_nodes(graph, states, {}) == ["side"]
    assert execution_outcome(graph, states) == "running"

    states["side"] = SUCCEEDED
    assert ready_nodes(graph, states, {}) == []
    assert execution_outcome(graph, states) == "waiting"

    states["approve"] = SUCCEEDED
    assert ready_nodes(graph, states, {}) == ["after"]
    assert execution_outcome(graph, states) == "running"


def test_pending_skips_keep_the_execution_running(branching: Graph) -> None:
    # Nothing runs, but the false branch still has to be marked skipped.
    states = {"check": SUCCEEDED, "yes": SUCCEEDED, "after_yes": SUCCEEDED}

    assert execution_outcome(branching, states) == "running"


def test_a_whole_run_driven_by_the_planner(branching: Graph) -> None:
    states: dict[str, StepState] = {}
    results: dict[str, bool] = {}
    order: list[str] = []

    while execution_outcome(branching, states) == "running":
        for node_id in skipped_nodes(branching, states, results):
            states[node_id] = SKIPPED
        for node_id in ready_nodes(branching, states, results):
            order.append(node_id)
            states[node_id] = SUCCEEDED
            if node_id == "check":
                results[node_id] = False

    assert execution_outcome(branching, states) == "success"
    assert order == ["check", "no", "after_no", "join"]
    assert {n for n, s in states.items() if s == SKIPPED} == {"yes", "after_yes"}


def test_step_states_are_plain_strings() -> None:
    assert StepState("waiting") is WAITING
    assert str(StepState.SUCCEEDED) == "succeeded"
    assert [s.value for s in StepState] == [
        "pending",
        "running",
        "succeeded",
        "failed",
        "skipped",
        "waiting",
    ]
    assert PENDING == "pending"
