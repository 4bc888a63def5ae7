from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from taskgate.outbound.adapters import DestinationConfigError, build_delivery, validate_config
from taskgate.outbound.event_text import render_text
from taskgate.outbound.signing import generate_webhook_secret, verify_standard

NOW = 1_700_000_000
SLACK_HOOK = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"
DISCORD_HOOK = "https://discord.com/api/webhooks/1/abc"


def _event(event_type: str = "task.completed", **fields: Any) -> dict[str, Any]:
    payload = fields.pop("payload", {"status": "COMPLETED", "result": "42 files renamed"})
    return {
        "id": 1017,
        "type": event_type,
        "created_at": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "task_id": "tsk_01",
        "payload": payload,
        **fields,
    }


def _json(body: bytes) -> Any:
    return json.loads(body)


def test_a_webhook_posts_the_event_signed_with_standard_webhooks() -> None:
    secret = generate_webhook_secret()
    request = build_delivery(
        "webhook", {"url": "https://example.com/hooks"}, secret, _event(), now=NOW
    )
    assert (request.method, request.url) == ("POST", "https://example.com/hooks")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == "1017"
    assert _json(request.body) == {
        "id": 1017,
        "type": "task.completed",
        "created_at": "2024-05-01T12:00:00+00:00",
        "task_id": "tsk_01",
        "payload": {"status": "COMPLETED", "result": "42 files renamed"},
    }
    verify_standard(secret, request.headers, request.body, now=NOW)


def test_an_unsigned_webhook_still_carries_id_and_timestamp() -> None:
    request = build_delivery("webhook", {"url": "http://example.com/h"}, None, _event(), now=NOW)
    assert request.headers["webhook-id"] == "1017"
    assert request.headers["webhook-timestamp"] == str(NOW)
    assert "webhook-signature" not in request.headers


def test_slack_posts_escaped_text_and_blocks_to_the_secret_hook_url() -> None:
    event = _event(payload={"status": "COMPLETED", "result": "<!channel> done & dusted"})
    config = {"channel": "#ops", "username": "taskgate"}
    request = build_delivery("slack", config, SLACK_HOOK, event, now=NOW)
    assert (request.method, request.url) == ("POST", SLACK_HOOK)
    body = _json(request.body)
    assert body["text"].startswith("*Task tsk_01 completed*\n")
    assert "&lt;!channel&gt; done &amp; dusted" in body["text"]
    assert "<!channel>" not in request.body.decode()
    assert body["blocks"][0] == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": body["text"]},
    }
    assert body["channel"] == "#ops"
    assert body["username"] == "taskgate"


def test_slack_blocks_can_be_turned_off() -> None:
    request = build_delivery("slack", {"blocks": False}, SLACK_HOOK, _event(), now=NOW)
    assert set(_json(request.body)) == {"text"}


def test_mattermost_posts_markdown_without_room_wide_mentions() -> None:
    event = _event("task.failed", payload={"error": "ping @channel and @all now"})
    request = build_delivery(
        "mattermost",
        {"icon_url": "https://x/i.png"},
        "https://mm.example.com/hooks/abc",
        event,
        now=NOW,
    )
    body = _json(request.body)
    assert body["text"].startswith("**Task tsk_01 failed**\n")
    assert "@channel" not in body["text"]
    assert "@all" not in body["text"]
    assert "@\u200bchannel" in body["text"]
    assert body["icon_url"] == "https://x/i.png"


def test_discord_content_is_capped_at_2000_characters_with_mentions_disabled() -> None:
    event = _event("schedule.fired", payload={"schedule_name": "nightly " * 600})
    request = build_delivery("discord", {"username": "taskgate"}, DISCORD_HOOK, event, now=NOW)
    body = _json(request.body)
    assert request.url == DISCORD_HOOK
    assert len(body["content"]) == 2000
    assert body["content"].endswith("…")
    assert body["allowed_mentions"] == {"parse": []}
    assert body["username"] == "taskgate"


def test_matrix_puts_a_message_into_the_url_encoded_room() -> None:
    config = {"homeserver": "https://matrix.example.org/", "room_id": "!AbC:example.org"}
    event = _event(id="evt/1 x")
    request = build_delivery("matrix", config, "syt_access_token", event, now=NOW)
    assert request.method == "PUT"
    assert request.url == (
        "https://matrix.example.org/_matrix/client/v3/rooms/%21AbC%3Aexample.org"
        "/send/m.room.message/evt%2F1%20x"
    )
    assert request.headers["authorization"] == "Bearer syt_access_token"
    body = _json(request.body)
    assert body["msgtype"] == "m.text"
    assert body["body"] == render_text(event)
    assert body["format"] == "org.matrix.custom.html"
    assert body["formatted_body"].startswith("<strong>Task tsk_01 completed</strong><br>")
    assert body["m.mentions"] == {}


def test_matrix_html_is_escaped() -> None:
    event = _event(payload={"result": "<script>alert(1)</script>"})
    config = {"homeserver": "https://m.org", "room_id": "!r:m.org"}
    body = _json(build_delivery("matrix", config, "tok", event, now=NOW).body)
    assert "<script>" not in body["formatted_body"]
    assert "&lt;script&gt;" in body["formatted_body"]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            _event("task.created", payload={"query": "Summarise   the\nreport"}),
            "Task tsk_01 created\nStatus: QUEUED\nRequest: Summarise the report",
        ),
        (_event("task.started", payload={}), "Task tsk_01 started\nStatus: RUNNING"),
        (_event(), "Task tsk_01 completed\nStatus: COMPLETED\nResult: 42 files renamed"),
        (
            _event("task.failed", payload={"status": "FAILED", "error": "exit 2: no such file"}),
            "Task tsk_01 failed\nStatus: FAILED\nError: exit 2: no such file",
        ),
        (
            _event("task.cancelled", payload={"reason": "superseded"}),
            "Task tsk_01 cancelled\nStatus: CANCELLED\nReason: superseded",
        ),
        (
            _event("task.timeout", payload={"error": "ran 300 s"}),
            "Task tsk_01 timed out\nStatus: TIMEOUT\nError: ran 300 s",
        ),
        (
            _event("job.completed", job_id="job_9", payload={"exit_code": 0}),
            "Job job_9 completed\nExit code: 0\nTask: tsk_01",
        ),
        (
            _event(
                "execution.failed",
                task_id=None,
                execution_id="exe_3",
                payload={"workflow_name": "billing", "error": "step charge failed"},
            ),
            "Workflow execution exe_3 failed\nWorkflow: billing\nError: step charge failed",
        ),
        (
            _event(
                "step.completed",
                task_id=None,
                execution_id="exe_3",
                payload={"node_key": "charge", "status": "SUCCESS"},
            ),
            "Step charge completed\nExecution: exe_3\nStatus: SUCCESS",
        ),
        (
            _event(
                "approval.requested",
                payload={
                    "approval_id": "apr_5",
                    "tool": "shell",
                    "summary": "Run `rm -rf build/`",
                    "arguments": {"command": "rm -rf build/", "api_token": "sk-live"},
                },
            ),
            "Approval needed: Run `rm -rf build/`\nTask: tsk_01\nApproval: apr_5\nTool: shell\n"
            'Arguments: {"command": "rm -rf build/", "api_token": "***"}',
        ),
        (
            _event("schedule.fired", payload={"schedule_name": "nightly"}),
            "Schedule nightly fired\nTask: tsk_01",
        ),
        (
            _event(
                "schedule.skipped",
                task_id=None,
                payload={"schedule_id": "sch_1", "reason": "paused"},
            ),
            "Schedule sch_1 skipped\nReason: paused",
        ),
        (
            _event(
                "destination.disabled",
                task_id=None,
                payload={"destination_name": "ops-slack", "reason": "10 failed deliveries"},
            ),
            "Destination ops-slack disabled\nReason: 10 failed deliveries",
        ),
        (_event("task.output.delta", payload={"delta": "…"}), "task.output.delta — tsk_01"),
        (_event("user.created", task_id=None, payload={}), "user.created — 1017"),
    ],
)
def test_render_text_reads_well_per_event_type(event: dict[str, Any], expected: str) -> None:
    assert render_text(event) == expected


def test_long_results_are_excerpted() -> None:
    text = render_text(_event(payload={"result": "x" * 5000}))
    assert len(text) < 400
    assert text.endswith("…")


@pytest.mark.parametrize(
    ("destination_type", "config", "secret", "problems"),
    [
        ("webhook", {"url": "https://example.com/h"}, None, []),
        ("webhook", {}, None, [("destination_config.url", "a URL is required")]),
        (
            "webhook",
            {"url": "ftp://example.com/h"},
            None,
            [("destination_config.url", "the URL must start with http:// or https://")],
        ),
        (
            "webhook",
            {"url": "https://user:pw@example.com/h"},
            None,
            [("destination_config.url", "credentials in the URL belong in `secret`")],
        ),
        (
            "webhook",
            {"url": "https://example.com/h"},
            "whsec_!!",
            [("secret", "a whsec_ secret must be base64 after whsec_")],
        ),
        ("slack", {"channel": "#ops"}, SLACK_HOOK, []),
        ("slack", {}, None, [("secret", "the incoming-webhook URL is required")]),
        (
            "discord",
            {"url": DISCORD_HOOK},
            DISCORD_HOOK,
            [
                (
                    "destination_config.url",
                    "an incoming-webhook URL is a credential: send it as `secret`",
                )
            ],
        ),
        (
            "mattermost",
            {"usrname": "x"},
            "mm.example.com/hooks/1",
            [
                ("secret", "the URL must start with http:// or https://"),
                ("destination_config.usrname", "unknown field"),
            ],
        ),
        ("slack", {"blocks": "yes"}, SLACK_HOOK, [("destination_config.blocks", "must be a bool")]),
        ("matrix", {"homeserver": "https://m.org", "room_id": "!r:m.org"}, "tok", []),
        (
            "matrix",
            {"room_id": "#alias:m.org"},
            None,
            [
                ("destination_config.homeserver", "a URL is required"),
                ("destination_config.room_id", "a room id such as !abc:example.org"),
                ("secret", "the Matrix access token is required"),
            ],
        ),
        (
            "sms",
            {},
            None,
            [
                (
                    "destination_type",
                    "unknown destination type "
                    "(one of: webhook, slack, discord, mattermost, matrix)",
                )
            ],
        ),
    ],
)
def test_validate_config_names_each_problem(
    destination_type: str,
    config: dict[str, Any],
    secret: str | None,
    problems: list[tuple[str, str]],
) -> None:
    assert validate_config(destination_type, config, secret) == problems


def test_build_delivery_refuses_an_invalid_destination() -> None:
    with pytest.raises(DestinationConfigError) as caught:
        build_delivery("matrix", {}, None, _event(), now=NOW)
    assert ("secret", "the Matrix access token is required") in caught.value.problems


def test_an_event_without_an_id_cannot_be_delivered() -> None:
    event = _event()
    del event["id"]
    with pytest.raises(ValueError, match="no id"):
        build_delivery("webhook", {"url": "https://example.com/h"}, None, event, now=NOW)
