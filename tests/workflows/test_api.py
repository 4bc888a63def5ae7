"""Workflow CRUD as Django Automate's clients use it: versions, ETags, validation, secrets."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.clients import User, create_user

ORDER_PROCESSOR: dict[str, Any] = {
    # Django Automate's documented create body, as written.
    "name": "Order Processor",
    "slug": "order-processor",
    "description": "Process incoming orders",
    "enabled": True,
    "trigger_type": "webhook",
    "trigger_config": {"event_type": "order.created"},
    "graph": {
        "nodes": [
            {
                "id": "step_1",
                "type": "logging",
                "config": {"message": "Order received: {{ event.payload.order_id }}"},
            }
        ]
    },
}


def log_graph(message: str = "hello") -> dict[str, Any]:
    return {"nodes": [{"id": "say", "type": "log", "config": {"message": message}}], "edges": []}


async def test_django_automate_create_read_list(client: httpx.AsyncClient, admin: User) -> None:
    response = await client.post("/api/v1/workflows", json=ORDER_PROCESSOR, headers=admin.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["etag"] == '"1"'
    assert response.headers["location"] == f"/api/v1/workflows/{created['id']}"
    assert created["workflow_version"] == 1
    assert created["slug"] == "order-processor"
    assert created["graph"] == ORDER_PROCESSOR["graph"]  # kept as written ("logging")
    assert created["trigger_config"] == {"event_type": "order.created"}

    fetched = await client.get(f"/api/v1/workflows/{created['id']}", headers=admin.headers)
    assert fetched.status_code == 200
    assert fetched.headers["etag"] == '"1"'
    assert fetched.json()["description"] == "Process incoming orders"

    other = {**ORDER_PROCESSOR, "name": "Nightly Report", "slug": None, "enabled": False}
    other["trigger_type"] = "manual"
    second = await client.post("/api/v1/workflows", json=other, headers=admin.headers)
    assert second.status_code == 201
    assert second.json()["slug"] == "nightly-report"

    listed = await client.get("/api/v1/workflows?enabled=true", headers=admin.headers)
    assert [w["name"] for w in listed.json()["results"]] == ["Order Processor"]
    searched = await client.get("/api/v1/workflows?search=NIGHTLY", headers=admin.headers)
    assert [w["slug"] for w in searched.json()["results"]] == ["nightly-report"]
    ordered = await client.get("/api/v1/workflows?ordering=name&count=true", headers=admin.headers)
    assert [w["name"] for w in ordered.json()["results"]] == ["Nightly Report", "Order Processor"]
    assert ordered.json()["count"] == 2
    bad = await client.get("/api/v1/workflows?ordering=graph", headers=admin.headers)
    assert bad.status_code == 400


async def test_every_change_is_a_version_and_stale_etags_are_refused(
    client: httpx.AsyncClient, admin: User
) -> None:
    created = (
        await client.post("/api/v1/workflows", json=ORDER_PROCESSOR, headers=admin.headers)
    ).json()
    url = f"/api/v1/workflows/{created['id']}"

    patched = await client.patch(
        url, json={"description": "v2"}, headers={**admin.headers, "If-Match": '"1"'}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["workflow_version"] == 2
    assert patched.headers["etag"] == '"2"'
    assert patched.json()["name"] == "Order Processor"  # untouched

    # Django Automate documents PUT with only some fields: they change, the rest stays.
    put = await client.put(
        url, json={"name": "Updated Name", "enabled": False}, headers=admin.headers
    )
    assert put.status_code == 200, put.text
    assert put.json()["workflow_version"] == 3
    assert put.json()["graph"] == ORDER_PROCESSOR["graph"]
    assert put.json()["description"] == "v2"

    stale = await client.patch(
        url, json={"description": "lost update"}, headers={**admin.headers, "If-Match": '"2"'}
    )
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "PRECONDITION_FAILED"

    unchanged = await client.patch(url, json={"name": "Updated Name"}, headers=admin.headers)
    assert unchanged.json()["workflow_version"] == 3  # nothing changed, no new version

    # A read-modify-write PUT echoing read-only fields is accepted.
    echoed = {**put.json(), "description": "v4"}
    roundtrip = await client.put(url, json=echoed, headers=admin.headers)
    assert roundtrip.status_code == 200, roundtrip.text
    assert roundtrip.json()["workflow_version"] == 4

    versions = await client.get(f"{url}/versions", headers=admin.headers)
    assert versions.status_code == 200
    history = versions.json()["results"]
    assert [v["workflow_version"] for v in history] == [4, 3, 2, 1]
    assert history[-1]["description"] == "Process incoming orders"  # immutable
    assert history[-1]["change"] == "created"
    one = await client.get(f"{url}/versions/2", headers=admin.headers)
    assert one.json()["description"] == "v2"


async def test_graph_errors_name_the_node_and_the_field(
    client: httpx.AsyncClient, admin: User
) -> None:
    body = {
        "name": "broken",
        "graph": {
            "nodes": [
                {"id": "fetch", "type": "http.request", "config": {"url": "ftp://x"}},
                {"id": "think", "type": "telepathy", "config": {}},
                {"id": "a", "type": "log", "config": {"message": "{{ unclosed"}},
            ],
            "edges": [{"from": "fetch", "to": "ghost"}],
        },
    }
    response = await client.post("/api/v1/workflows", json=body, headers=admin.headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    problems = {d["field"]: d["message"] for d in error["details"]}
    assert "fetch" in problems["graph.nodes[0].config.url"]
    assert "telepathy" in problems["graph.nodes[1].type"]
    assert "graph.nodes[2].config.message" in problems
    assert "ghost" in problems["graph.edges[0].to"]

    cycle = {
        "name": "loop",
        "graph": {
            "nodes": [
                {"id": "a", "type": "log", "config": {"message": "a"}},
                {"id": "b", "type": "log", "config": {"message": "b"}},
            ],
            "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}],
        },
    }
    response = await client.post("/api/v1/workflows", json=cycle, headers=admin.headers)
    assert response.status_code == 400
    assert "cycle" in str(response.json()["error"]["details"])


async def test_template_injection_is_refused_on_save(
    client: httpx.AsyncClient, admin: User
) -> None:
    attempts = [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ event|attr('__globals__') }}",
        "{{ self.__init__.__globals__ }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    ]
    for attempt in attempts:
        body = {"name": "evil", "graph": log_graph(attempt)}
        response = await client.post("/api/v1/workflows", json=body, headers=admin.headers)
        assert response.status_code == 400, attempt
        detail = response.json()["error"]["details"][0]
        assert detail["field"] == "graph.nodes[0].config.message"
        assert "unsafe template" in detail["message"]
    condition = {
        "name": "evil condition",
        "graph": {
            "nodes": [{"id": "c", "type": "condition", "config": {"expression": "input.__class__"}}]
        },
    }
    response = await client.post("/api/v1/workflows", json=condition, headers=admin.headers)
    assert response.status_code == 400
    # Data keys starting with "_" stay readable: only Python's dunder names are refused.
    fine = {"name": "fine", "graph": log_graph("{{ event.payload._id }}")}
    assert (
        await client.post("/api/v1/workflows", json=fine, headers=admin.headers)
    ).status_code == 201


async def test_trigger_config_is_checked(client: httpx.AsyncClient, admin: User) -> None:
    body = {
        "name": "bad trigger",
        "trigger_type": "event",
        "trigger_config": {"filter": {"colour": "red"}},
        "graph": log_graph(),
    }
    response = await client.post("/api/v1/workflows", json=body, headers=admin.headers)
    assert response.status_code == 400
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert fields == {"trigger_config.event_type", "trigger_config.filter.colour"}


async def test_secrets_are_write_only(client: httpx.AsyncClient, admin: User) -> None:
    body = {
        "name": "with secret",
        "graph": log_graph("{{ secrets.API_TOKEN | length }}"),
        "secrets": {"API_TOKEN": "s3cr3t-value-123"},
    }
    response = await client.post("/api/v1/workflows", json=body, headers=admin.headers)
    assert response.status_code == 201
    assert response.json()["secret_names"] == ["API_TOKEN"]
    workflow_id = response.json()["id"]
    for path in (f"/api/v1/workflows/{workflow_id}", f"/api/v1/workflows/{workflow_id}/versions"):
        text = (await client.get(path, headers=admin.headers)).text
        assert "s3cr3t-value-123" not in text
    removed = await client.patch(
        f"/api/v1/workflows/{workflow_id}",
        json={"secrets": {"API_TOKEN": None, "OTHER": "x" * 8}},
        headers=admin.headers,
    )
    assert removed.json()["secret_names"] == ["OTHER"]


async def test_duplicate_delete_and_ownership(client: httpx.AsyncClient, admin: User) -> None:
    bob = await create_user(client, admin, "bob")
    created = (
        await client.post("/api/v1/workflows", json=ORDER_PROCESSOR, headers=admin.headers)
    ).json()
    url = f"/api/v1/workflows/{created['id']}"

    copy = await client.post(f"{url}/duplicate", headers=admin.headers)
    assert copy.status_code == 201, copy.text
    assert copy.json()["id"] != created["id"]
    assert copy.json()["name"] == "Order Processor (copy)"
    assert copy.json()["slug"] == "order-processor-copy"
    assert copy.json()["workflow_version"] == 1
    assert copy.json()["graph"] == created["graph"]

    taken = await client.post("/api/v1/workflows", json=ORDER_PROCESSOR, headers=admin.headers)
    assert taken.status_code == 409

    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(
            method, url, headers=bob.headers, json={"name": "x"} if method == "PATCH" else None
        )
        assert response.status_code == 404, method
    assert (await client.get("/api/v1/workflows", headers=bob.headers)).json()["results"] == []

    stale = await client.delete(url, headers={**admin.headers, "If-Match": '"7"'})
    assert stale.status_code == 412
    assert (await client.delete(url, headers=admin.headers)).status_code == 204
    assert (await client.get(url, headers=admin.headers)).status_code == 404
    # The slug is free again once the workflow is gone.
    again = await client.post("/api/v1/workflows", json=ORDER_PROCESSOR, headers=admin.headers)
    assert again.status_code == 201


async def test_templates_nested_500_deep_are_400_on_save(
    client: httpx.AsyncClient, admin: User
) -> None:
    expressions = [
        "{{ " + "(" * 500 + "1" + ")" * 500 + " }}",
        "{{ " + "[" * 500 + "]" * 500 + " }}",
        "{% if true %}" * 500 + "x" + "{% endif %}" * 500,
    ]
    cases: list[tuple[object, str]] = [(e, "graph.nodes[0].config.template") for e in expressions]
    for depth, field in [(500, "graph.nodes.0.config.template.a"), (80, "graph.nodes[0].config")]:
        deep: object = "{{ input.x }}"
        for _ in range(depth):
            deep = {"a": deep}
        cases.append((deep, field))
    for template, field in cases:
        graph = {"nodes": [{"id": "t", "type": "transform", "config": {"template": template}}]}
        response = await client.post(
            "/api/v1/workflows", json={"name": "deep", "graph": graph}, headers=admin.headers
        )
        assert response.status_code == 400, response.text
        detail = response.json()["error"]["details"][0]
        assert detail["field"].startswith(field)
        assert "nested" in detail["message"]
        assert "RecursionError" not in detail["message"]
    listed = await client.get("/api/v1/workflows", headers=admin.headers)
    assert listed.json()["results"] == []


async def test_a_run_input_nested_too_deep_is_400(client: httpx.AsyncClient, admin: User) -> None:
    body = {"name": "w", "graph": log_graph("{{ input }}")}
    created = await client.post("/api/v1/workflows", json=body, headers=admin.headers)
    deep: object = []
    for _ in range(300):
        deep = [deep]
    response = await client.post(
        f"/api/v1/workflows/{created.json()['id']}/run",
        json={"input": {"tree": deep}},
        headers=admin.headers,
    )
    # Accepted, it answered 500 (pydantic serialises about 250 levels) and stayed stored.
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"][0]["field"].startswith("input.tree.0.0")
    listed = await client.get("/api/v1/executions", headers=admin.headers)
    assert listed.json()["results"] == []
