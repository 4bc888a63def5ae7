"""Chat destinations receive their service's own message shape."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import AppFactory
from tests.destinations.receiver import receiver
from tests.destinations.support import delivering_app
from tests.destinations.test_destinations_api import create_destination
from tests.destinations.test_subscriptions_api import subscribe


async def test_slack_discord_mattermost_and_matrix_get_their_shapes(
    app_factory: AppFactory,
) -> None:
    async with delivering_app(app_factory) as env, receiver() as hook:
        bodies: list[dict[str, Any]] = [
            {
                "destination_type": "slack",
                "destination_config": {"channel": "#ops", "username": "taskgate"},
                "secret": hook.url("/slack/T0/B0/xyz"),
            },
            {
                "destination_type": "discord",
                "destination_config": {"username": "taskgate"},
                "secret": hook.url("/discord/api/webhooks/1/abc"),
            },
            {
                "destination_type": "mattermost",
                "destination_config": {"channel": "town-square"},
                "secret": hook.url("/mattermost/hooks/xyz"),
            },
            {
                "destination_type": "matrix",
                "destination_config": {
                    "homeserver": hook.url("/matrix"),
                    "room_id": "!ops:example.org",
                },
                "secret": "syt_matrix_access_token",
            },
        ]
        for body in bodies:
            destination = await create_destination(
                env.client, env.admin, {"name": body["destination_type"], **body}
            )
            await subscribe(env.client, env.admin, destination["id"], "task.completed")

        task_id = uuid.uuid4()
        event_id = await env.emit(
            env.admin.id,
            "task.completed",
            task_id=task_id,
            payload={"status": "COMPLETED", "result": "@channel the answer is 42"},
        )
        await hook.wait_for(4)
        await env.wait_dispatched(event_id)

    by_service = {r.path.split("/")[1]: r for r in hook.requests}
    assert set(by_service) == {"slack", "discord", "mattermost", "matrix"}

    slack = by_service["slack"]
    assert (slack.method, slack.path) == ("POST", "/slack/T0/B0/xyz")
    assert slack.json()["channel"] == "#ops"
    assert slack.json()["username"] == "taskgate"
    assert f"Task {task_id} completed" in slack.json()["text"]
    assert [b["type"] for b in slack.json()["blocks"]] == ["section", "context"]

    discord = by_service["discord"].json()
    assert discord["allowed_mentions"] == {"parse": []}
    assert "the answer is 42" in discord["content"]

    mattermost = by_service["mattermost"].json()
    assert mattermost["channel"] == "town-square"
    assert "@channel" not in mattermost["text"]  # defused: nobody is paged

    matrix = by_service["matrix"]
    assert matrix.method == "PUT"
    assert matrix.path == (
        f"/matrix/_matrix/client/v3/rooms/%21ops%3Aexample.org/send/m.room.message/{event_id}"
    )
    assert matrix.headers["authorization"] == "Bearer syt_matrix_access_token"
    assert matrix.json()["msgtype"] == "m.text"
    assert matrix.json()["m.mentions"] == {}
    assert "Result: @channel the answer is 42" in matrix.json()["body"]
