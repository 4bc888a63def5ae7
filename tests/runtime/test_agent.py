from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from taskgate.runtime.agent import (
    AgentConfig,
    AgentOutcome,
    ApprovalOutcome,
    ToolOutcome,
    run_agent,
)
from taskgate.runtime.providers import ChatMessage, ModelError, OpenAICompatibleProvider, Usage
from tests.fakes.openai_server import FakeOpenAI


class Suspended(Exception):
    pass


class RecordingHost:
    def __init__(
        self, approve: bool = True, suspend_on_approval: bool = False, stop_at_checkpoint: int = 0
    ) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.commands: list[list[str]] = []
        self.subtasks: list[str] = []
        self.approvals: list[tuple[str, dict[str, Any]]] = []
        self.checkpoints = 0
        self._approve = approve
        self._suspend_on_approval = suspend_on_approval
        self._stop_at_checkpoint = stop_at_checkpoint

    async def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        self.events.append((event_type, payload))

    async def checkpoint(self) -> None:
        self.checkpoints += 1
        if self.checkpoints == self._stop_at_checkpoint:
            raise Suspended("cancelled")

    async def run_commands(self, commands: list[str]) -> ToolOutcome:
        self.commands.append(commands)
        return ToolOutcome(f"$ {commands[0]}\nhi\nexit code 0")

    async def spawn_subtask(self, query: str) -> ToolOutcome:
        self.subtasks.append(query)
        return ToolOutcome("subtask result: 42")

    async def request_approval(self, tool: str, arguments: dict[str, Any]) -> ApprovalOutcome:
        self.approvals.append((tool, arguments))
        if self._suspend_on_approval:
            raise Suspended("waiting for approval")
        return ApprovalOutcome(self._approve, "" if self._approve else "too risky")

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [payload for kind, payload in self.events if kind == event_type]


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeOpenAI) -> FakeOpenAI:
    fake_server.reset()
    return fake_server


@pytest.fixture
async def provider(fake: FakeOpenAI) -> AsyncIterator[OpenAICompatibleProvider]:
    provider = OpenAICompatibleProvider(fake.base_url, "sk-test", "test-model", timeout_seconds=5)
    yield provider
    await provider.aclose()


async def run(
    provider: OpenAICompatibleProvider,
    host: RecordingHost,
    query: str = "Say hi from the sandbox",
    criteria: list[str] | None = None,
    **config: Any,
) -> AgentOutcome:
    return await run_agent(
        provider,
        host,
        AgentConfig(model="test-model", **config),
        query=query,
        history=[],
        acceptance_criteria=criteria,
    )


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [message for message in request["messages"] if message["role"] == "tool"]


async def test_tool_call_round_trip(fake: FakeOpenAI, provider: OpenAICompatibleProvider) -> None:
    fake.add_reply(tool_calls=[("run_commands", {"commands": ["echo hi"]})])
    fake.add_reply(text="The sandbox said hi.")
    host = RecordingHost()

    outcome = await run(provider, host)

    assert host.commands == [["echo hi"]]
    assert outcome.status == "completed"
    assert outcome.final_text == "The sandbox said hi."
    assert outcome.iterations == 2
    first, second = fake.requests
    assert {tool["function"]["name"] for tool in first["tools"]} == {
        "run_commands",
        "spawn_subtask",
        "finish",
    }
    [result] = tool_messages(second)
    assert result["content"] == "$ echo hi\nhi\nexit code 0"
    assert result["tool_call_id"] == second["messages"][-2]["tool_calls"][0]["id"]
    assert [event["tool"] for event in host.of_type("agent.tool_call")] == ["run_commands"]
    assert host.of_type("agent.tool_result")[0]["is_error"] is False
    assert [m.role for m in outcome.transcript] == ["user", "assistant", "tool", "assistant"]


async def test_finish_tool_gives_the_final_text(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake.add_reply(
        tool_calls=[
            ("spawn_subtask", {"query": "compute the answer"}),
            ("finish", {"result": "The answer is 42."}),
            ("run_commands", {"commands": ["rm -rf /tmp/x"]}),
        ]
    )
    host = RecordingHost()

    outcome = await run(provider, host)

    assert (outcome.status, outcome.final_text) == ("completed", "The answer is 42.")
    assert host.subtasks == ["compute the answer"]
    assert host.commands == []
    assert len(fake.requests) == 1
    assert [m.role for m in outcome.transcript] == ["user", "assistant", "tool", "tool", "tool"]


@pytest.mark.parametrize(
    ("tool_call", "error"),
    [
        (("delete_everything", {}), "unknown tool 'delete_everything'"),
        (("run_commands", '{"commands": ['), "invalid arguments for run_commands"),
        (("run_commands", {"commands": "echo hi"}), "'commands' must be a non-empty array"),
    ],
)
async def test_bad_tool_calls_are_reported_to_the_model(
    fake: FakeOpenAI,
    provider: OpenAICompatibleProvider,
    tool_call: tuple[str, Any],
    error: str,
) -> None:
    fake.add_reply(tool_calls=[tool_call])
    fake.add_reply(tool_calls=[("run_commands", {"commands": ["echo hi"]})])
    fake.add_reply(text="Recovered.")
    host = RecordingHost()

    outcome = await run(provider, host)

    assert (outcome.status, outcome.final_text) == ("completed", "Recovered.")
    [reported] = tool_messages(fake.requests[1])
    assert reported["content"].startswith("Error:")
    assert error in reported["content"]
    assert host.commands == [["echo hi"]]
    assert host.of_type("agent.tool_result")[0]["is_error"] is True


async def test_stops_after_max_iterations(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    for n in range(5):
        fake.add_reply(text=f"Step {n}.", tool_calls=[("run_commands", {"commands": [f"s{n}"]})])
    host = RecordingHost()

    outcome = await run(provider, host, max_iterations=3)

    assert outcome.status == "max_iterations"
    assert outcome.iterations == 3
    assert outcome.final_text == "Step 2."
    assert len(fake.requests) == 3
    assert [e["iteration"] for e in host.of_type("agent.iteration")] == [1, 2, 3]
    assert [e["text"] for e in host.of_type("agent.thinking")] == ["Step 0.", "Step 1.", "Step 2."]


@pytest.mark.parametrize("stream", [True, False])
async def test_output_deltas_arrive_in_order_and_make_up_the_answer(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider, stream: bool
) -> None:
    answer = "The quick brown fox jumps over the lazy dog."
    fake.add_reply(tool_calls=[("run_commands", {"commands": ["echo fox"]})])
    fake.add_reply(text=answer)
    host = RecordingHost()

    outcome = await run(provider, host, stream=stream)

    deltas = host.of_type("task.output.delta")
    assert len(deltas) > 1 if stream else len(deltas) == 1
    assert "".join(d["delta"] for d in deltas) == outcome.final_text == answer
    assert {d["iteration"] for d in deltas} == {2}
    assert bool(fake.requests[0].get("stream")) is stream


async def test_verification_passes(fake: FakeOpenAI, provider: OpenAICompatibleProvider) -> None:
    fake.add_reply(text="hello.txt contains hello")
    fake.add_reply(text='```json\n{"passed": true, "reason": "the file is described"}\n```')
    host = RecordingHost()

    outcome = await run(provider, host, criteria=["mentions hello.txt", "is one line"])

    assert outcome.status == "completed"
    assert outcome.verification is not None
    assert (outcome.verification.passed, outcome.verification.reason) == (
        True,
        "the file is described",
    )
    assert host.of_type("agent.verification_passed") == [
        {"reason": "the file is described", "criteria": ["mentions hello.txt", "is one line"]}
    ]
    verify_request = fake.requests[1]
    assert "tools" not in verify_request
    question = verify_request["messages"][-1]["content"]
    assert "1. mentions hello.txt" in question
    assert "hello.txt contains hello" in question


@pytest.mark.parametrize(
    ("verdict", "reason"),
    [
        ('{"passed": false, "reason": "no file name"}', "no file name"),
        ("Looks good to me!", "not understood"),
    ],
)
async def test_verification_fails(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider, verdict: str, reason: str
) -> None:
    fake.add_reply(text="done")
    fake.add_reply(text=verdict)
    host = RecordingHost()

    outcome = await run(provider, host, criteria=["names the file"])

    assert outcome.status == "failed"
    assert outcome.verification is not None
    assert not outcome.verification.passed
    assert reason in outcome.verification.reason
    assert outcome.error is not None
    assert reason in outcome.error
    assert len(host.of_type("agent.verification_failed")) == 1
    assert host.of_type("agent.verification_passed") == []


@pytest.mark.parametrize(
    ("approve", "ran", "reported"), [(True, True, "hi"), (False, False, "too risky")]
)
async def test_flagged_tool_runs_only_when_approved(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider, approve: bool, ran: bool, reported: str
) -> None:
    fake.add_reply(tool_calls=[("run_commands", {"commands": ["make deploy"]})])
    host = RecordingHost(approve=approve)

    await run(provider, host, approval_required_tools=frozenset({"run_commands"}))

    assert host.approvals == [("run_commands", {"commands": ["make deploy"]})]
    assert host.commands == ([["make deploy"]] if ran else [])
    [result] = tool_messages(fake.requests[1])
    assert reported in result["content"]


async def test_only_valid_calls_of_flagged_tools_ask_for_approval(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake.add_reply(tool_calls=[("run_commands", {"commands": ["ls"]})])
    fake.add_reply(tool_calls=[("spawn_subtask", {"query": ""})])
    host = RecordingHost()

    await run(provider, host, approval_required_tools=frozenset({"spawn_subtask"}))

    assert host.approvals == []
    assert host.commands == [["ls"]]
    assert host.subtasks == []


async def test_approval_can_suspend_the_loop(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake.add_reply(tool_calls=[("run_commands", {"commands": ["make deploy"]})])
    host = RecordingHost(suspend_on_approval=True)

    with pytest.raises(Suspended):
        await run(provider, host, approval_required_tools=frozenset({"run_commands"}))

    assert host.commands == []
    assert len(fake.requests) == 1


async def test_checkpoint_stops_the_loop(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake.add_reply(tool_calls=[("run_commands", {"commands": ["echo 1"]})])
    fake.add_reply(tool_calls=[("run_commands", {"commands": ["echo 2"]})])
    host = RecordingHost(stop_at_checkpoint=3)

    with pytest.raises(Suspended):
        await run(provider, host)

    assert host.commands == [["echo 1"]]
    assert len(fake.requests) == 1


async def test_usage_is_summed_over_every_call(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake.add_reply(tool_calls=[("run_commands", {"commands": ["true"]})], usage=(100, 10))
    fake.add_reply(text="ok", usage=(150, 20))
    fake.add_reply(text='{"passed": true, "reason": "fine"}', usage=(40, 5))

    outcome = await run(provider, RecordingHost(), criteria=["says ok"])

    assert outcome.usage == Usage(290, 35)
    assert outcome.model == "test-model"


async def test_history_is_sent_before_the_query(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    history = [ChatMessage.user("My name is Ada."), ChatMessage.assistant("Hello Ada.")]

    outcome = await run_agent(
        provider, RecordingHost(), AgentConfig(), query="What is my name?", history=history
    )

    sent = fake.requests[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[-1]["content"] == "What is my name?"
    assert [m.role for m in outcome.transcript] == ["user", "assistant"]


async def test_empty_answer_fails(fake: FakeOpenAI, provider: OpenAICompatibleProvider) -> None:
    fake.add_reply(text="")

    outcome = await run(provider, RecordingHost())

    assert outcome.status == "failed"
    assert outcome.error == "the model returned an empty answer"


async def test_model_errors_propagate(fake: FakeOpenAI, provider: OpenAICompatibleProvider) -> None:
    fake.add_reply(status=503)

    with pytest.raises(ModelError) as caught:
        await run(provider, RecordingHost())

    assert caught.value.retryable
