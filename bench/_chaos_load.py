"""The chaos harness's client side: a steady load of command tasks and workflow runs, submitted
the way a careful client does (an Idempotency-Key per submission, retried on errors and on
another API process), and the ledger that checks afterwards, in the database, that every
accepted submission ended exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import httpx

TASK_FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
EXECUTION_FINAL = ("SUCCESS", "FAILED", "CANCELLED")
TASK_OUTCOMES = ("task.completed", "task.failed", "task.cancelled", "task.timeout")
EXECUTION_OUTCOMES = ("execution.succeeded", "execution.failed", "execution.cancelled")
# How long one submission is retried before the client gives up on it (then it is neither
# accepted nor counted as lost: the client knows it was not taken).
GIVE_UP_SECONDS = 120.0
REQUEST_TIMEOUT = 15.0

WORKFLOW = {
    "name": "chaos",
    "trigger_type": "manual",
    "graph": {
        "nodes": [
            {"id": "step", "type": "task", "config": {"commands": ["echo step"]}},
            {"id": "done", "type": "log", "config": {"message": "run {{ input.chaos }}"}},
        ],
        "edges": [{"from": "step", "to": "done"}],
    },
}


@dataclass
class Submission:
    key: str
    kind: str  # "task" or "run"
    accepted_id: str | None = None
    refused: str | None = None  # a 4xx the client cannot retry: a bug in the harness or server


@dataclass
class LoadStats:
    statuses: Counter[str] = field(default_factory=Counter)
    missing_retry_after: int = 0  # 503s without Retry-After
    unclear_errors: list[str] = field(default_factory=list)  # 5xx bodies without our envelope
    slowest_answer: float = 0.0  # the longest any request took to get an answer
    last_success: float | None = None
    max_gap: float = 0.0  # the longest stretch without one accepted submission
    first_error_after_mark: float | None = None

    def success(self, now: float) -> None:
        if self.last_success is not None:
            self.max_gap = max(self.max_gap, now - self.last_success)
        self.last_success = now


class Load:
    def __init__(
        self,
        bases: list[str],
        api_key: str,
        workflow_id: str,
        tasks_per_second: float,
        runs_per_second: float,
    ) -> None:
        self.bases = bases
        self.headers = {"X-API-Key": api_key}
        self.workflow_id = workflow_id
        self.tasks_per_second = tasks_per_second
        self.runs_per_second = runs_per_second
        self.submissions: list[Submission] = []
        self.stats = LoadStats()
        self._pending: set[asyncio.Task[None]] = set()
        self._client = httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT, limits=httpx.Limits(max_keepalive_connections=8)
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Submit at the configured rates until ``stop`` is set, then wait for the answers."""
        rate = self.tasks_per_second + self.runs_per_second
        share_runs = self.runs_per_second / rate
        next_at = time.monotonic()
        while not stop.is_set():
            kind = "run" if random.random() < share_runs else "task"
            submission = Submission(uuid.uuid4().hex, kind)
            self.submissions.append(submission)
            task = asyncio.create_task(self._submit(submission))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            next_at += 1 / rate
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        if self._pending:
            await asyncio.wait(self._pending)
        await self._client.aclose()

    async def _submit(self, submission: Submission) -> None:
        if submission.kind == "task":
            path = "/api/v1/tasks"
            body: dict[str, object] = {
                "commands": ["echo chaos"],
                "context": {"chaos": submission.key},
            }
        else:
            path = f"/api/v1/workflows/{self.workflow_id}/run"
            body = {"input": {"chaos": submission.key}}
        headers = {**self.headers, "Idempotency-Key": submission.key}
        deadline = time.monotonic() + GIVE_UP_SECONDS
        base = random.choice(self.bases)
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                answer = await self._client.post(base + path, json=body, headers=headers)
            except httpx.TransportError as error:
                self.stats.statuses[type(error).__name__] += 1
                base = self._other(base)
                await asyncio.sleep(0.2)
                continue
            self.stats.slowest_answer = max(self.stats.slowest_answer, time.monotonic() - started)
            self.stats.statuses[str(answer.status_code)] += 1
            if answer.is_success:
                data = answer.json()
                submission.accepted_id = data.get("task_id") or data.get("execution_id")
                self.stats.success(time.monotonic())
                return
            self._check_error(answer)
            if answer.status_code in (409, 429) or answer.status_code >= 500:
                # 409: the same key still in flight elsewhere (its first try was cut off).
                retry = answer.headers.get("retry-after")
                await asyncio.sleep(min(float(retry), 2.0) if retry and retry.isdigit() else 0.3)
                base = self._other(base)
                continue
            submission.refused = f"{answer.status_code} {answer.text[:200]}"
            return

    def _other(self, base: str) -> str:
        others = [b for b in self.bases if b != base]
        return random.choice(others) if others else base

    def _check_error(self, answer: httpx.Response) -> None:
        if answer.status_code == 503 and "retry-after" not in answer.headers:
            self.stats.missing_retry_after += 1
        if answer.status_code >= 500:
            try:
                error = answer.json()["error"]
                clear = bool(error["code"]) and bool(error["message"])
            except (ValueError, KeyError, TypeError):
                clear = False
            if not clear and len(self.stats.unclear_errors) < 5:
                self.stats.unclear_errors.append(f"{answer.status_code} {answer.text[:200]}")


@dataclass
class Verdict:
    accepted: int
    completed: int  # accepted submissions whose task or execution ended in a final state
    lost: int  # accepted, and missing or never final
    duplicated: int  # a second task for one key, a second outcome, a job completed twice
    stuck: int  # rows nobody accepted (a submission cut off) that never became final
    not_taken: int  # given up by the client: never accepted
    unanswered: int  # given up by the client, yet stored (and run once): the answer was lost
    slowest: float  # seconds from submission to final state, the slowest task
    refused: list[str]
    failed: int  # accepted and final, but FAILED (reported, not an error by itself)


async def _fetch_state(dsn: str) -> dict[str, list[asyncpg.Record]]:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return {
            "tasks": await connection.fetch(
                "SELECT id::text, status, context->>'chaos' AS key FROM tasks"
            ),
            "executions": await connection.fetch(
                "SELECT id::text, status, input->>'chaos' AS key FROM workflow_executions"
            ),
            "task_outcomes": await connection.fetch(
                "SELECT task_id::text AS id, count(*) AS n FROM events "
                "WHERE type = ANY($1::text[]) AND task_id IS NOT NULL GROUP BY task_id",
                list(TASK_OUTCOMES),
            ),
            "execution_outcomes": await connection.fetch(
                "SELECT execution_id::text AS id, count(*) AS n FROM events "
                "WHERE type = ANY($1::text[]) AND task_id IS NULL AND execution_id IS NOT NULL "
                "GROUP BY execution_id",
                list(EXECUTION_OUTCOMES),
            ),
            "slowest": await connection.fetch(
                "SELECT coalesce(max(extract(epoch FROM completed_at - created_at)), 0) AS s "
                "FROM tasks"
            ),
            "twice_done": await connection.fetch("SELECT id FROM queue_jobs WHERE completions > 1"),
        }
    finally:
        await connection.close()


def _all_final(state: dict[str, list[asyncpg.Record]]) -> bool:
    return all(r["status"] in TASK_FINAL for r in state["tasks"]) and all(
        r["status"] in EXECUTION_FINAL for r in state["executions"]
    )


async def settle(dsn: str, timeout: float) -> dict[str, list[asyncpg.Record]]:
    """The database's state once every task and execution is final (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = await _fetch_state(dsn)
        except (OSError, asyncpg.PostgresError):
            state = None
        if state is not None and (_all_final(state) or time.monotonic() > deadline):
            return state
        if time.monotonic() > deadline:
            raise TimeoutError("the database did not answer")
        await asyncio.sleep(1)


def judge(submissions: list[Submission], state: dict[str, list[asyncpg.Record]]) -> Verdict:
    rows = {"task": state["tasks"], "run": state["executions"]}
    final = {"task": TASK_FINAL, "run": EXECUTION_FINAL}
    by_id = {kind: {r["id"]: r for r in rows[kind]} for kind in rows}
    per_key = {kind: Counter(r["key"] for r in rows[kind] if r["key"]) for kind in rows}
    outcomes = {
        "task": {r["id"]: r["n"] for r in state["task_outcomes"]},
        "run": {r["id"]: r["n"] for r in state["execution_outcomes"]},
    }
    accepted = [s for s in submissions if s.accepted_id]
    completed = lost = failed = 0
    for submission in accepted:
        row = by_id[submission.kind].get(submission.accepted_id or "")
        if row is None or row["status"] not in final[submission.kind]:
            lost += 1
            continue
        completed += 1
        failed += row["status"] == "FAILED"
    duplicated = sum(n - 1 for counts in per_key.values() for n in counts.values() if n > 1)
    duplicated += sum(n - 1 for kind in outcomes for n in outcomes[kind].values() if n > 1)
    duplicated += len(state["twice_done"])
    accepted_ids = {s.accepted_id for s in accepted}
    given_up = [s for s in submissions if not s.accepted_id and not s.refused]
    stuck = sum(
        1
        for kind in rows
        for r in rows[kind]
        if r["status"] not in final[kind] and r["id"] not in accepted_ids
    )
    return Verdict(
        accepted=len(accepted),
        completed=completed,
        lost=lost,
        duplicated=duplicated,
        stuck=stuck,
        not_taken=len(given_up),
        unanswered=sum(1 for s in given_up if per_key[s.kind][s.key]),
        slowest=float(state["slowest"][0]["s"]),
        refused=[s.refused for s in submissions if s.refused][:5],
        failed=failed,
    )
