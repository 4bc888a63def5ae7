"""Request metrics per route template, as Prometheus scrapes them."""

from __future__ import annotations

from prometheus_client import generate_latest

from taskgate.http.middleware import Metrics
from tests.conftest import AppFactory


def samples(metrics: Metrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    lines = (line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    return {name: float(value) for name, value in lines}


def test_requests_are_counted_by_status_and_timed_in_buckets() -> None:
    metrics = Metrics()
    for elapsed in (0.0004, 0.001, 0.003, 0.3, 12.0):
        metrics.observe("GET", "/api/v1/users/me", 200, elapsed)
    metrics.observe("GET", "/api/v1/users/me", 401, 0.002)
    metrics.observe("POST", "/api/v1/tasks", 201, 0.02)
    got = samples(metrics)
    me = 'method="GET",route="/api/v1/users/me"'
    assert got[f'taskgate_http_requests_total{{{me},status="200"}}'] == 5
    assert got[f'taskgate_http_requests_total{{{me},status="401"}}'] == 1
    bucket = "taskgate_http_request_duration_seconds_bucket"
    # Cumulative, bounds inclusive, as prometheus_client's own histogram counts them.
    assert got[f'{bucket}{{le="0.001",{me}}}'] == 2
    assert got[f'{bucket}{{le="0.0025",{me}}}'] == 3
    assert got[f'{bucket}{{le="0.005",{me}}}'] == 4
    assert got[f'{bucket}{{le="0.25",{me}}}'] == 4
    assert got[f'{bucket}{{le="0.5",{me}}}'] == 5
    assert got[f'{bucket}{{le="10.0",{me}}}'] == 5
    assert got[f'{bucket}{{le="+Inf",{me}}}'] == 6
    assert got[f"taskgate_http_request_duration_seconds_count{{{me}}}"] == 6
    assert abs(got[f"taskgate_http_request_duration_seconds_sum{{{me}}}"] - 12.3064) < 1e-9
    tasks = 'method="POST",route="/api/v1/tasks"'
    assert got[f'taskgate_http_requests_total{{{tasks},status="201"}}'] == 1
    assert got[f'{bucket}{{le="0.01",{tasks}}}'] == 0
    assert got[f'{bucket}{{le="0.025",{tasks}}}'] == 1


async def test_metrics_are_closed_without_a_token(app_factory: AppFactory) -> None:
    async with app_factory() as (_, client):
        response = await client.get("/metrics")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
        assert "TASKGATE_HTTP__METRICS_TOKEN" in response.json()["error"]["message"]
        assert "taskgate_http_requests" not in response.text


async def test_metrics_answer_the_configured_bearer_token(app_factory: AppFactory) -> None:
    token = "scrape-" + "t" * 32
    async with app_factory(http={"metrics_token": token}) as (_, client):
        await client.get("/health")
        for authorization in (None, "Bearer wrong", f"Basic {token}", token):
            headers = {"Authorization": authorization} if authorization else {}
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 401, authorization
            assert refused.headers["www-authenticate"] == "Bearer"
        scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert scraped.status_code == 200
        assert 'route="/health"' in scraped.text


async def test_metrics_can_be_opened_explicitly(app_factory: AppFactory) -> None:
    async with app_factory(http={"metrics_public": True}) as (_, client):
        scraped = await client.get("/metrics")
        assert scraped.status_code == 200
        assert "taskgate_http_request_duration_seconds" in scraped.text
