"""``taskgate tasks``: submit, list, read, cancel and follow tasks on a running server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from taskgate.cli.console import console

tasks_app = typer.Typer(help="Submit and watch tasks on a running server.", no_args_is_help=True)
err_console = Console(stderr=True)
FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})
TERMINAL_EVENTS = frozenset({"task.completed", "task.failed", "task.cancelled", "task.timeout"})
POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Server:
    url: str
    api_key: str | None

    def client(self, timeout: float | None = 30.0) -> httpx.Client:
        headers = {"X-API-Key": self.api_key} if self.api_key else {}
        return httpx.Client(base_url=self.url.rstrip("/"), headers=headers, timeout=timeout)


@tasks_app.callback()
def _server(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="TASKGATE_URL", help="The taskgate server.")
    ] = "http://127.0.0.1:8080",
    api_key: Annotated[
        str | None, typer.Option(envvar="TASKGATE_API_KEY", help="An API key (tg_...).")
    ] = None,
) -> None:
    ctx.obj = Server(url, api_key)


def _call(server: Server, method: str, path: str, **kwargs: Any) -> Any:
    try:
        with server.client() as client:
            response = client.request(method, f"/api/v1{path}", **kwargs)
    except httpx.HTTPError as exc:
        err_console.print(f"[red]Cannot reach {server.url}:[/] {exc}")
        raise typer.Exit(2) from exc
    if response.status_code >= 400:
        _fail(response)
    return response.json()


def _fail(response: httpx.Response) -> None:
    try:
        error = response.json()["error"]
        message = error["message"]
        details = "; ".join(f"{d['field']}: {d['message']}" for d in error.get("details", []))
    except (ValueError, KeyError, TypeError):
        message, details = response.text, ""
    err_console.print(
        f"[red]{response.status_code}[/] {message}" + (f" ({details})" if details else "")
    )
    raise typer.Exit(1)


@tasks_app.command()
def submit(
    ctx: typer.Context,
    query: Annotated[str | None, typer.Argument(help="Text for the model.")] = None,
    script: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="A script file to run.")
    ] = None,
    language: Annotated[
        Literal["bash", "python"] | None,
        typer.Option(help="Script language (default: from the file name, else bash)."),
    ] = None,
    command: Annotated[
        list[str] | None, typer.Option("--command", "-c", help="A command (repeatable).")
    ] = None,
    timeout: Annotated[int | None, typer.Option(help="Seconds the task may take.")] = None,
    label: Annotated[list[str] | None, typer.Option(help="A label (repeatable).")] = None,
    session: Annotated[str | None, typer.Option(help="Session id to continue.")] = None,
    priority: Annotated[int, typer.Option(help="-10..10, higher runs sooner.")] = 0,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Watch it live.")] = False,
) -> None:
    """Submit a task: text, --script FILE, or one or more --command."""
    body: dict[str, Any] = {"priority": priority}
    if query is not None:
        body["query"] = query
    if script is not None:
        chosen = language or ("python" if script.suffix == ".py" else "bash")
        body["script"] = {"language": chosen, "content": script.read_text()}
    if command:
        body["commands"] = command
    if timeout is not None:
        body["timeout_seconds"] = timeout
    if label:
        body["labels"] = label
    if session:
        body["session_id"] = session
    server: Server = ctx.obj
    created = _call(server, "POST", "/tasks", json=body)
    if not follow:
        console.print(created["task_id"])
        return
    status = follow_task(server, created["task_id"])
    raise typer.Exit(0 if status == "COMPLETED" else 1)


@tasks_app.command("list")
def list_tasks(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Statuses, comma-separated.")] = None,
    label: Annotated[str | None, typer.Option(help="Only tasks with this label.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many.")] = 25,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List your tasks, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    if label:
        params["label"] = label
    page = _call(ctx.obj, "GET", "/tasks", params=params)
    if as_json:
        console.print_json(json.dumps(page["results"]))
        return
    table = Table("task id", "status", "kind", "input", "created")
    for task in page["results"]:
        table.add_row(
            task["task_id"],
            _styled(task["status"]),
            task["kind"],
            _summary(task),
            task["created_at"],
        )
    console.print(table)


@tasks_app.command()
def get(ctx: typer.Context, task_id: str) -> None:
    """Show one task as JSON."""
    console.print_json(json.dumps(_call(ctx.obj, "GET", f"/tasks/{task_id}")))


@tasks_app.command()
def cancel(
    ctx: typer.Context,
    task_id: str,
    reason: Annotated[str | None, typer.Option(help="Why, for the record.")] = None,
) -> None:
    """Cancel a task (a running one stops within a second)."""
    answer = _call(ctx.obj, "POST", f"/tasks/{task_id}/cancel", json={"reason": reason})
    console.print(answer["message"])


def _summary(task: dict[str, Any]) -> str:
    if task["query"]:
        text = str(task["query"])
    elif "commands" in task["input"]:
        text = "; ".join(task["input"]["commands"])
    else:
        text = f"{task['input'].get('script', {}).get('language', '')} script"
    return text if len(text) <= 50 else text[:49] + "…"


def _styled(status: str) -> Text:
    colour = {"COMPLETED": "green", "FAILED": "red", "TIMEOUT": "red", "CANCELLED": "yellow"}
    return Text(status, style=colour.get(status, "cyan"))


# -- following a task ----------------------------------------------------------------------


def sse_events(client: httpx.Client, task_id: str, after: int | None) -> Iterator[dict[str, Any]]:
    """Events from the server's SSE stream; raises LookupError when the server has none."""
    headers = {"Last-Event-ID": str(after)} if after is not None else {}
    with client.stream(
        "GET", f"/api/v1/tasks/{task_id}/stream", headers=headers, timeout=None
    ) as response:
        kind = response.headers.get("content-type", "")
        if response.status_code != 200 or not kind.startswith("text/event-stream"):
            raise LookupError("no SSE stream")
        frame: dict[str, str] = {}
        data: list[str] = []
        for line in response.iter_lines():
            if line and not line.startswith(":"):
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "data":
                    data.append(value)
                else:
                    frame[field] = value
                continue
            if not line:  # a blank line ends a frame; one without event or data (retry:) is not one
                event = _sse_event(frame, "\n".join(data)) if data or "event" in frame else None
                frame, data = {}, []
                if event is None:
                    continue
                if event["type"] == "done":
                    return
                yield event
                if event["type"] in TERMINAL_EVENTS:
                    return


def _sse_event(frame: dict[str, str], data: str) -> dict[str, Any]:
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        body = {"text": data}
    if isinstance(body, dict) and "type" in body and "payload" in body:
        return body
    event_id = frame.get("id")
    return {
        "id": int(event_id) if event_id and event_id.isdigit() else event_id,
        "type": frame.get("event", "message"),
        "payload": body if isinstance(body, dict) else {"data": body},
    }


def polled_events(
    client: httpx.Client, task_id: str, after: int | None
) -> Iterator[dict[str, Any]]:
    """Events by polling the history endpoint, until the task's terminal event."""
    while True:
        params: dict[str, Any] = {"limit": 100}
        if after is not None:
            params["after"] = after
        response = client.get(f"/api/v1/tasks/{task_id}/events", params=params)
        if response.status_code >= 400:
            _fail(response)
        results = response.json()["results"]
        for event in results:
            after = event["id"]
            yield event
            if event["type"] in TERMINAL_EVENTS:
                return
        if len(results) < 100:
            time.sleep(POLL_SECONDS)


def task_events(server: Server, task_id: str) -> Iterator[dict[str, Any]]:
    """The task's events from the start: over SSE when the server streams, else polled."""
    with server.client(timeout=30.0) as client:
        try:
            yield from sse_events(client, task_id, None)
            return
        except (LookupError, httpx.HTTPError):
            pass
        yield from polled_events(client, task_id, None)


def follow_task(server: Server, task_id: str) -> str:
    """Show the task live (a status line under its output) until it ends; its final status."""
    status = "QUEUED"
    started = time.monotonic()

    def line() -> Text:
        elapsed = time.monotonic() - started
        return Text.assemble(f"{task_id}  ", _styled(status), f"  {elapsed:5.1f}s")

    with Live(line(), console=console, refresh_per_second=8, transient=True) as live:
        for event in task_events(server, task_id):
            status = _show(live, event, status)
            live.update(line())
    final = _call(server, "GET", f"/tasks/{task_id}")
    console.print(line())
    if final.get("error"):
        console.print(f"[red]{final.get('error_code')}:[/] {final['error']}")
    return str(final["status"])


def _show(live: Live, event: dict[str, Any], status: str) -> str:
    kind, payload = event["type"], event.get("payload") or {}
    out = live.console
    if kind == "job.output":
        out.print(
            Text(
                payload.get("chunk", ""), style="red" if payload.get("stream") == "stderr" else ""
            ),
            end="",
        )
    elif kind == "task.output.delta":
        out.print(payload.get("delta", ""), end="", markup=False, highlight=False)
    elif kind == "agent.tool_call":
        out.print(
            Text(f"\n→ {payload.get('tool')} {json.dumps(payload.get('arguments'))}", style="dim")
        )
    elif kind.startswith("agent.verification"):
        out.print(Text(f"\n{kind}: {payload.get('reason', '')}", style="dim"))
    new_status = payload.get("status")
    return str(new_status) if kind.startswith("task.") and new_status else status
