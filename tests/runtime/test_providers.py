from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from taskgate.runtime.providers import (
    ChatMessage,
    ModelError,
    ModelPrice,
    OpenAICompatibleProvider,
    PriceTable,
    ToolCall,
    ToolSpec,
    Usage,
)
from tests.fakes.openai_server import FakeOpenAI

API_KEY = "sk-test"
ECHO_TOOL = ToolSpec(
    "run_commands",
    "Run commands",
    {"type": "object", "properties": {"commands": {"type": "array", "items": {"type": "string"}}}},
)


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeOpenAI) -> FakeOpenAI:
    fake_server.reset()
    return fake_server


@pytest.fixture
async def provider(fake: FakeOpenAI) -> AsyncIterator[OpenAICompatibleProvider]:
    provider = OpenAICompatibleProvider(fake.base_url, API_KEY, "test-model", timeout_seconds=5)
    yield provider
    await provider.aclose()


class DeltaRecorder:
    def __init__(self) -> None:
        self.deltas: list[str] = []

    async def __call__(self, delta: str) -> None:
        self.deltas.append(delta)


async def test_chat_returns_text_and_usage(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake.add_reply(text="Hello from the model", usage=(12, 4))

    result = await provider.chat([ChatMessage.user("Say hello")], temperature=0.2, max_tokens=50)

    assert result.content == "Hello from the model"
    assert result.usage == Usage(12, 4)
    assert result.usage.total == 16
    assert result.finish_reason == "stop"
    assert result.model == "test-model"
    [sent] = fake.requests
    assert sent["messages"] == [{"role": "user", "content": "Say hello"}]
    assert sent["temperature"] == 0.2
    assert sent["max_tokens"] == 50
    assert "stream" not in sent


async def test_streaming_delivers_deltas_that_make_up_the_text(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake.add_reply(text="one two three four", usage=(7, 4))
    recorder = DeltaRecorder()

    result = await provider.chat([ChatMessage.user("count")], on_delta=recorder)

    assert len(recorder.deltas) > 1
    assert "".join(recorder.deltas) == result.content == "one two three four"
    assert result.usage == Usage(7, 4)
    assert result.finish_reason == "stop"
    [sent] = fake.requests
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_streamed_tool_call_fragments_are_reassembled(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    commands = {"commands": ["echo hi", "ls -la /tmp"]}
    fake.add_reply(
        text="Let me look.",
        tool_calls=[("run_commands", commands), ("finish", {"result": "a long enough result"})],
    )

    result = await provider.chat(
        [ChatMessage.user("look")], tools=[ECHO_TOOL], on_delta=DeltaRecorder()
    )

    assert [(call.name, call.arguments) for call in result.tool_calls] == [
        ("run_commands", commands),
        ("finish", {"result": "a long enough result"}),
    ]
    assert all(call.id.startswith("call_") for call in result.tool_calls)
    assert result.content == "Let me look."
    assert result.finish_reason == "tool_calls"
    assert fake.requests[0]["tools"][0]["function"]["name"] == "run_commands"


async def test_non_streamed_tool_calls_are_parsed(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake.add_reply(tool_calls=[("run_commands", {"commands": ["pwd"]})])

    result = await provider.chat([ChatMessage.user("where")], tools=[ECHO_TOOL])

    [call] = result.tool_calls
    assert (call.name, call.arguments, call.arguments_error) == (
        "run_commands",
        {"commands": ["pwd"]},
        None,
    )
    assert result.content == ""


@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_tool_arguments_are_surfaced(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider, stream: bool
) -> None:
    fake.add_reply(tool_calls=[("run_commands", '{"commands": ["echo')])

    result = await provider.chat(
        [ChatMessage.user("go")], tools=[ECHO_TOOL], on_delta=DeltaRecorder() if stream else None
    )

    [call] = result.tool_calls
    assert call.arguments == {}
    assert call.raw_arguments == '{"commands": ["echo'
    assert call.arguments_error is not None


async def test_tool_turns_are_sent_in_openai_form(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    call = ToolCall.create("call_1", "run_commands", {"commands": ["date"]})
    conversation = [
        ChatMessage.system("be brief"),
        ChatMessage.user("what day is it"),
        ChatMessage.assistant("", [call]),
        ChatMessage.tool("call_1", "Tue", name="run_commands"),
    ]

    await provider.chat(conversation, tools=[ECHO_TOOL])

    assert fake.requests[0]["messages"][2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "run_commands", "arguments": '{"commands": ["date"]}'},
                }
            ],
        },
        {"role": "tool", "content": "Tue", "tool_call_id": "call_1"},
    ]


@pytest.mark.parametrize("stream", [False, True])
async def test_server_error_is_retryable(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider, stream: bool
) -> None:
    fake.add_reply(status=500, error_body={"error": {"message": "the engine exploded"}})

    with pytest.raises(ModelError) as caught:
        await provider.chat([ChatMessage.user("hi")], on_delta=DeltaRecorder() if stream else None)

    assert caught.value.code == "MODEL_ERROR"
    assert caught.value.retryable
    assert caught.value.status_code == 500
    assert "the engine exploded" in caught.value.message


async def test_rate_limit_is_retryable(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake.add_reply(status=429)

    with pytest.raises(ModelError) as caught:
        await provider.chat([ChatMessage.user("hi")])

    assert (caught.value.code, caught.value.retryable) == ("MODEL_RATE_LIMITED", True)


async def test_rejected_api_key_is_not_retryable(fake: FakeOpenAI) -> None:
    provider = OpenAICompatibleProvider(fake.base_url, "sk-wrong", "test-model")
    try:
        with pytest.raises(ModelError) as caught:
            await provider.chat([ChatMessage.user("hi")])
    finally:
        await provider.aclose()

    assert caught.value.code == "MODEL_UNAVAILABLE"
    assert not caught.value.retryable
    assert caught.value.status_code == 401
    assert "API key" in caught.value.message


async def test_unknown_model_is_not_retryable(
    fake: FakeOpenAI, provider: OpenAICompatibleProvider
) -> None:
    fake.add_reply(status=404, error_body={"error": {"message": "model 'x' does not exist"}})

    with pytest.raises(ModelError) as caught:
        await provider.chat([ChatMessage.user("hi")], on_delta=DeltaRecorder())

    assert (caught.value.code, caught.value.retryable) == ("MODEL_UNAVAILABLE", False)
    assert "does not exist" in caught.value.message


async def test_slow_answer_times_out(fake: FakeOpenAI) -> None:
    fake.add_reply(text="too late", delay=5.0)
    provider = OpenAICompatibleProvider(fake.base_url, API_KEY, "test-model", timeout_seconds=0.2)
    try:
        with pytest.raises(ModelError) as caught:
            await provider.chat([ChatMessage.user("hi")])
    finally:
        await provider.aclose()

    assert (caught.value.code, caught.value.retryable) == ("MODEL_TIMEOUT", True)


async def test_unreachable_server_is_unavailable_and_retryable() -> None:
    with FakeOpenAI() as stopped:
        base_url = stopped.base_url
    provider = OpenAICompatibleProvider(base_url, None, "test-model", connect_timeout=2)
    try:
        with pytest.raises(ModelError) as caught:
            await provider.chat([ChatMessage.user("hi")])
    finally:
        await provider.aclose()

    assert (caught.value.code, caught.value.retryable) == ("MODEL_UNAVAILABLE", True)
    assert "cannot reach" in caught.value.message


async def test_list_models(provider: OpenAICompatibleProvider) -> None:
    assert await provider.list_models() == ["fake-model"]


def test_malformed_arguments_that_are_not_an_object() -> None:
    call = ToolCall.from_raw("c1", "finish", "[1, 2]")

    assert call.arguments == {}
    assert call.arguments_error == "arguments must be a JSON object"


def test_price_table_costs_by_exact_or_prefix_model_name() -> None:
    table = PriceTable({"gpt-4o": ModelPrice(2.5, 10.0), "gpt-4o-mini": ModelPrice(0.15, 0.6)})
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000)

    assert table.cost("gpt-4o", usage) == pytest.approx(7.5)
    assert table.cost("gpt-4o-mini-2024-07-18", usage) == pytest.approx(0.45)
    assert table.cost("llama3", usage) == 0.0
