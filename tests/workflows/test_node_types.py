"""Node types that reach outside: HTTP through the outbound guard, a model, a destination."""

from __future__ import annotations

import json
from collections.abc import Callable

from taskgate.settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.workflows.support import (
    LoopbackServer,
    create_workflow,
    engine_app,
    node,
    run,
    steps_by_key,
    wait_execution,
)

SettingsFactory = Callable[..., Settings]


async def test_http_requests_go_through_the_outbound_guard(
    settings_factory: SettingsFactory,
) -> None:
    with LoopbackServer() as server:
        graph = {
            "nodes": [
                node("big", "http.request", {"url": f"{server.url}/big/b"}),
                node("cut", "transform", {"template": "{{ steps.big.output.body | length }}"}),
            ],
            "edges": [{"from": "big", "to": "cut"}],
        }
        async with engine_app(settings_factory) as env:
            workflow_id = await create_workflow(
                env.client, env.alice, {"name": "g", "graph": graph}
            )
            detail = await wait_execution(
                env.client, env.alice, await run(env.client, env.alice, workflow_id)
            )
            assert detail["status"] == "SUCCESS"
            assert steps_by_key(detail)["big"]["output_data"]["truncated"] is True
            assert steps_by_key(detail)["cut"]["output_data"] == 1024 * 1024

        async with engine_app(settings_factory, outbound={"allow_loopback": False}) as env:
            workflow_id = await create_workflow(
                env.client, env.alice, {"name": "g", "graph": graph}
            )
            detail = await wait_execution(
                env.client, env.alice, await run(env.client, env.alice, workflow_id)
            )
            assert detail["status"] == "FAILED"
            big = steps_by_key(detail)["big"]
            assert "outbound URL refused (127.0.0.1)" in big["error"]
            assert big["attempt"] == 1  # a refused address is not retried
        assert server.hits["b"] == 1


async def test_llm_prompt_and_notify(settings_factory: SettingsFactory) -> None:
    with FakeOpenAI() as model, LoopbackServer() as server:
        model.add_reply(text="Ship it.", usage=(12, 3))
        async with engine_app(settings_factory, model={"base_url": model.base_url}) as env:
            client, alice = env.client, env.alice
            destination = await client.post(
                "/api/v1/destinations",
                json={
                    "name": "ops hook",
                    "destination_type": "webhook",
                    "destination_config": {"url": f"{server.url}/hit/notify"},
                },
                headers=alice.headers,
            )
            assert destination.status_code == 201, destination.text
            graph = {
                "nodes": [
                    node(
                        "ask",
                        "llm.prompt",
                        {"prompt": "Should we ship order {{ input.id }}?", "system": "Be brief."},
                    ),
                    node(
                        "tell",
                        "notify",
                        {
                            "destination_id": destination.json()["id"],
                            "message": "Model says: {{ steps.ask.output.text }}",
                        },
                    ),
                ],
                "edges": [{"from": "ask", "to": "tell"}],
            }
            workflow_id = await create_workflow(client, alice, {"name": "llm", "graph": graph})
            detail = await wait_execution(
                client, alice, await run(client, alice, workflow_id, {"id": 5})
            )
            assert detail["status"] == "SUCCESS", detail
            ask = steps_by_key(detail)["ask"]["output_data"]
            assert ask["text"] == "Ship it."
            assert ask["usage"]["total_tokens"] == 15
            messages = model.requests[0]["messages"]
            assert messages[0] == {"role": "system", "content": "Be brief."}
            assert messages[1]["content"] == "Should we ship order 5?"

            assert steps_by_key(detail)["tell"]["output_data"]["delivered"] is True
            delivered = json.loads(server.requests[-1]["body"])
            assert delivered["type"] == "workflow.notify"
            assert delivered["payload"]["message"] == "Model says: Ship it."
            assert delivered["execution_id"] == detail["id"]
            # The same id on every attempt, so the receiver can drop a retried duplicate.
            headers = {k.lower(): v for k, v in server.requests[-1]["headers"].items()}
            assert headers["webhook-id"] == f"{detail['id']}:tell"


async def test_llm_prompt_without_a_model_fails_clearly(settings_factory: SettingsFactory) -> None:
    async with engine_app(settings_factory) as env:
        graph = {"nodes": [node("ask", "llm.prompt", {"prompt": "hi"})]}
        workflow_id = await create_workflow(env.client, env.alice, {"name": "m", "graph": graph})
        detail = await wait_execution(
            env.client, env.alice, await run(env.client, env.alice, workflow_id)
        )
        assert detail["status"] == "FAILED"
        assert "MODEL_UNAVAILABLE" in steps_by_key(detail)["ask"]["error"]


async def test_a_step_that_overruns_its_timeout_fails(settings_factory: SettingsFactory) -> None:
    with LoopbackServer() as server:
        async with engine_app(settings_factory) as env:
            graph = {
                "nodes": [
                    node(
                        "stuck",
                        "http.request",
                        {"url": f"{server.url}/slow/stuck"},
                        timeout_seconds=0.5,
                    )
                ]
            }
            workflow_id = await create_workflow(
                env.client, env.alice, {"name": "t", "graph": graph}
            )
            detail = await wait_execution(
                env.client, env.alice, await run(env.client, env.alice, workflow_id)
            )
            server.release.set()
            assert detail["status"] == "FAILED"
            stuck = steps_by_key(detail)["stuck"]
            assert stuck["error"] == "the step timed out after 0.5 s"
            assert stuck["duration_ms"] < 10_000


async def test_notify_reaches_no_destination_of_another_project(
    settings_factory: SettingsFactory,
) -> None:
    with LoopbackServer() as server:
        async with engine_app(settings_factory) as env:
            client, alice = env.client, env.alice
            # Alice's own destination, in another of her projects than the workflow's.
            side = await client.post(
                "/api/v1/projects", json={"name": "Side"}, headers=alice.headers
            )
            assert side.status_code == 201, side.text
            destination = await client.post(
                "/api/v1/destinations",
                json={
                    "name": "side hook",
                    "destination_type": "webhook",
                    "destination_config": {"url": f"{server.url}/hit/stolen"},
                },
                headers={**alice.headers, "X-Tenant-ID": side.json()["id"]},
            )
            assert destination.status_code == 201, destination.text
            graph = {
                "nodes": [node("tell", "notify", {"destination_id": destination.json()["id"]})]
            }
            workflow_id = await create_workflow(client, alice, {"name": "n", "graph": graph})
            detail = await wait_execution(client, alice, await run(client, alice, workflow_id))
        assert detail["status"] == "FAILED"
        assert "not found" in steps_by_key(detail)["tell"]["error"]
        assert server.hits["stolen"] == 0
