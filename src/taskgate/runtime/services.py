"""The services a process's background work shares, typed, built once per process.

The app's lifespan builds one ``RuntimeServices`` (its API and the worker embedded in it share
it: ``app.state.services``), and so does ``taskgate worker``; each closes it at the end, after
the parts that use it have stopped. A member is made on first use, so a process pays only for
what it runs: an API process never chooses a sandbox, a worker that sends no webhook never opens
the deliveries' client. Tests, benchmarks and embedders hand in their own model provider or
sandbox: ``RuntimeServices(settings, model=…, sandbox=…)``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

import structlog

from taskgate.outbound.guarded_http import GuardedClient, guarded_client
from taskgate.outbound.secretbox import SecretBox, secret_box
from taskgate.outbound.ssrf import url_policy
from taskgate.runtime.providers import ModelProvider, OpenAICompatibleProvider
from taskgate.runtime.sandbox import (
    Sandbox,
    SandboxError,
    UidPool,
    UnavailableSandbox,
    select_sandbox,
)
from taskgate.settings import SandboxSettings, Settings

log = structlog.get_logger()
# A workflow's http.request node reads at most this much of a response.
WORKFLOW_RESPONSE_BYTES = 1024 * 1024


class RuntimeServices:
    """Shared clients and backends: the secret box, the model provider, the sandbox, and the
    guarded HTTP clients of webhook deliveries and workflow ``http.request`` nodes."""

    def __init__(
        self,
        settings: Settings,
        *,
        model: ModelProvider | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.settings = settings
        self._model = model
        self._sandbox = sandbox
        self._sandbox_lock = asyncio.Lock()
        self._secret_box: SecretBox | None = None
        self._delivery_client: GuardedClient | None = None
        self._workflow_client: GuardedClient | None = None
        # What this object opened, closed last first; what was handed in stays its owner's.
        self._closers: list[Callable[[], Awaitable[None]]] = []

    @property
    def secret_box(self) -> SecretBox:
        """Seals and opens stored secrets (destinations', workflows')."""
        if self._secret_box is None:
            self._secret_box = secret_box(self.settings)
        return self._secret_box

    @property
    def model(self) -> ModelProvider | None:
        """The model provider text tasks and ``llm.prompt`` nodes call; None when no model is
        configured (``model.base_url``)."""
        config = self.settings.model
        if self._model is None and config.base_url is not None:
            api_key = config.api_key.get_secret_value() if config.api_key else None
            client = OpenAICompatibleProvider(
                config.base_url, api_key, config.model, config.timeout_seconds
            )
            self._model = client
            self._closers.append(client.aclose)
        return self._model

    @property
    def chosen_sandbox(self) -> Sandbox | None:
        """The sandbox, if one was chosen already."""
        return self._sandbox

    async def sandbox(self) -> Sandbox:
        """The process's sandbox, chosen once, on first use: the choice runs a trial."""
        if self._sandbox is not None:
            return self._sandbox
        async with self._sandbox_lock:
            if self._sandbox is None:
                self._sandbox = await asyncio.to_thread(choose_sandbox, self.settings.sandbox)
        return self._sandbox

    @property
    def delivery_client(self) -> GuardedClient:
        """Webhook and chat deliveries' client (pooled connections, the URL policy)."""
        if self._delivery_client is None:
            self._delivery_client = guarded_client(
                url_policy(self.settings),
                timeout=self.settings.delivery.request_timeout_seconds,
            )
            self._closers.append(self._delivery_client.aclose)
        return self._delivery_client

    @property
    def workflow_client(self) -> GuardedClient:
        """Workflow ``http.request`` nodes' client."""
        if self._workflow_client is None:
            self._workflow_client = guarded_client(
                url_policy(self.settings), max_response_bytes=WORKFLOW_RESPONSE_BYTES
            )
            self._closers.append(self._workflow_client.aclose)
        return self._workflow_client

    async def aclose(self) -> None:
        """Close what was opened, last first; a failing close does not stop the others."""
        while self._closers:
            closer = self._closers.pop()
            try:
                await closer()
            except Exception:
                log.exception("runtime_service_close_failed")


def choose_sandbox(config: SandboxSettings) -> Sandbox:
    """The configured sandbox backend; blocks for its trial run."""
    pool = uid_pool(config)
    if pool is not None:
        try:
            pool.sweep()  # sandboxes a killed worker may have left behind
        except SandboxError as exc:
            return UnavailableSandbox(f"the sandbox uids cannot be leased: {exc}")
    return select_sandbox(config.backend, pool)


def uid_pool(config: SandboxSettings) -> UidPool | None:
    """Running as root, each sandbox runs as a uid of its own from the configured range."""
    if os.geteuid() != 0:
        return None
    return UidPool(config.uid_first, config.uid_count, config.uid_lease_dir)
