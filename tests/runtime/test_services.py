"""The runtime services a process shares: what a test or an embedder hands in is used, and
only what the services opened themselves is closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from taskgate.jobs import Worker
from taskgate.runtime.providers import ChatMessage, ChatResult
from taskgate.runtime.sandbox import OutputCallback, SandboxRequest, SandboxResult
from taskgate.runtime.services import RuntimeServices
from taskgate.settings import Settings
from tests.support.clients import User, running_app
from tests.tasks.flows import submit, wait_for_status


class StandInSandbox:
    """Runs nothing: answers every request with the same output."""

    name = "stand-in"
    isolated = False

    def __init__(self) -> None:
        self.requests: list[SandboxRequest] = []

    async def run(
        self, request: SandboxRequest, on_output: OutputCallback | None = None
    ) -> SandboxResult:
        self.requests.append(request)
        if on_output is not None:
            await on_output("stdout", b"from the stand-in\n")
        return SandboxResult(0, "exited", None, 0.01, "from the stand-in\n", False, 18, None)


class StandInModel:
    """Answers every conversation with the same words, and counts whether it was closed."""

    name = "stand-in"

    def __init__(self) -> None:
        self.closed = False

    async def chat(self, messages: Sequence[ChatMessage], **options: Any) -> ChatResult:
        return ChatResult("the stand-in model answers", finish_reason="stop", model="stand-in")

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def sandbox() -> StandInSandbox:
    return StandInSandbox()


@pytest.fixture
def model() -> StandInModel:
    return StandInModel()


@pytest.fixture
async def app_client(
    settings_factory: Callable[..., Settings],
    sandbox_dir: Path,
    sandbox: StandInSandbox,
    model: StandInModel,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app with a worker, given a stand-in sandbox and model (and a model URL nothing
    listens on: were it called, text tasks would fail)."""
    settings = settings_factory(model={"base_url": "http://127.0.0.1:9/v1"}).model_copy(
        update={"data_dir": sandbox_dir}
    )
    services = RuntimeServices(settings, model=model, sandbox=sandbox)
    async with running_app(settings, [Worker(concurrency=2)], services) as pair:
        yield pair


async def test_tasks_run_in_the_sandbox_and_model_the_app_is_given(
    client: httpx.AsyncClient, alice: User, sandbox: StandInSandbox, model: StandInModel
) -> None:
    script = await submit(client, alice, commands=["echo never runs here"])
    text = await submit(client, alice, query="Who answers?")
    ran = await wait_for_status(client, alice, script["task_id"])
    answered = await wait_for_status(client, alice, text["task_id"])
    assert ran["status"] == "COMPLETED", ran
    assert ran["result"] == "from the stand-in\n"
    assert [r.commands for r in sandbox.requests] == [("echo never runs here",)]
    assert answered["status"] == "COMPLETED", answered
    assert answered["result"] == "the stand-in model answers"


async def test_the_app_leaves_what_it_was_handed_to_its_owner(
    settings_factory: Callable[..., Settings], model: StandInModel
) -> None:
    settings = settings_factory()
    services = RuntimeServices(settings, model=model)
    async with running_app(settings, services=services) as (app, _):
        assert app.state.services is services
        deliveries = services.delivery_client
    assert deliveries.is_closed  # the app's shutdown closed what the services opened
    assert not model.closed


async def test_closing_closes_only_what_the_services_opened(
    settings_factory: Callable[..., Settings],
) -> None:
    model = StandInModel()
    services = RuntimeServices(settings_factory(), model=model)
    deliveries, workflows = services.delivery_client, services.workflow_client
    assert services.delivery_client is deliveries  # made once, then shared
    await services.aclose()
    assert deliveries.is_closed
    assert workflows.is_closed
    assert not model.closed
