"""Settings: nested groups read from ``TASKGATE_*`` environment variables (``__`` nests)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The host uids sandboxes run as when taskgate runs as root (runtime/sandbox/uids.py).
DEFAULT_FIRST_UID = 1_900_000_000
"""Outside the ranges login users, systemd (dynamic users, containers) and subuid maps use."""
DEFAULT_UID_COUNT = 1024
DEFAULT_LEASE_DIR = Path("/run/taskgate/sandbox-uids")


class DatabaseSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Unset: an embedded SQLite file in the data directory. "
        "PostgreSQL: postgresql+asyncpg://user@host/db.",
    )
    pool_size: int = Field(
        default=10, ge=1, description="Connections kept per process (PostgreSQL)."
    )
    max_overflow: int = Field(default=10, ge=0, description="Extra connections under burst load.")
    connect_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Give up opening a connection after this long (PostgreSQL); the request "
        "then answers 503 with Retry-After instead of hanging on a database out of reach.",
    )
    pool_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Longest wait for a free pooled connection before answering 503.",
    )
    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=0, description="SQLite busy timeout.")
    sqlite_write_hold_seconds: float = Field(
        default=30.0,
        ge=0,
        description="SQLite: a unit of work holding the write lock longer than this is logged "
        "with its stack and rolled back, so one stuck writer cannot stop every write (0: never).",
    )
    echo: bool = Field(default=False, description="Log every SQL statement.")


class AuthSettings(BaseModel):
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key for access tokens. Unset: generated once and kept in the data dir.",
    )
    access_token_ttl_seconds: int = Field(default=900, ge=30, description="Access token lifetime.")
    refresh_token_ttl_seconds: int = Field(
        default=7 * 24 * 3600, ge=60, description="Refresh token lifetime."
    )
    principal_cache_seconds: float = Field(
        default=1.0,
        ge=0,
        description="How long a verified API key or user state is trusted before re-reading it.",
    )
    governance_poll_seconds: float = Field(
        default=2.0,
        ge=0,
        description="How often each API process checks for role, group, rule or project "
        "changes that another process made, should the announcement on the bus be lost "
        "(0: rely on the bus and the principal cache's expiry).",
    )
    login_max_failures: int = Field(
        default=5, ge=1, description="Failed logins per account before it is locked briefly."
    )
    login_lockout_seconds: int = Field(default=300, ge=1, description="Account lockout length.")


class HTTPSettings(BaseModel):
    host: str = Field(default="127.0.0.1", description="Interface `taskgate serve` binds.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port `taskgate serve` listens on.")
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="Request body cap.")
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins.")
    idempotency_ttl_seconds: int = Field(default=24 * 3600, description="Idempotency key life.")
    trust_forwarded_for: bool = Field(
        default=False, description="Take the client IP from X-Forwarded-For (behind a proxy)."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token a Prometheus scrape of /metrics must send. Unset: /metrics "
        "answers 401 unless metrics_public is set.",
    )
    metrics_public: bool = Field(
        default=False,
        description="Serve /metrics to anyone without a token (only on a trusted network: it "
        "shows routes, traffic and error rates).",
    )


class RateLimitSettings(BaseModel):
    enabled: bool = Field(default=True, description="Apply rate limits.")
    standard: str = Field(default="120/minute", description="Default budget per principal.")
    model: str = Field(default="30/minute", description="Budget for model and chat endpoints.")
    login: str = Field(default="10/minute", description="Login attempts per IP and username.")
    anonymous: str = Field(default="60/minute", description="Budget per IP when unauthenticated.")
    project: str = Field(
        default="6000/minute", description="Budget per project, shared by all its principals."
    )


class GovernanceSettings(BaseModel):
    project_creation: Literal["anyone", "admins"] = Field(
        default="anyone", description="Who may create projects besides their default one."
    )


class SandboxSettings(BaseModel):
    backend: Literal["auto", "bwrap", "process"] = Field(
        default="auto",
        description="bwrap (auto and bwrap alike: without it, script and command tasks fail "
        "with SANDBOX_UNAVAILABLE), or process: no namespaces, no isolation, only on purpose.",
    )
    uid_first: int = Field(
        default=DEFAULT_FIRST_UID,
        ge=1000,
        description="First host uid of the range sandboxes run as when taskgate runs as root; "
        "each running sandbox leases one, so each has its own process budget.",
    )
    uid_count: int = Field(
        default=DEFAULT_UID_COUNT,
        ge=1,
        le=1_000_000,
        description="Size of that range: sandboxes that may run at once on this host.",
    )
    uid_lease_dir: Path = Field(
        default=DEFAULT_LEASE_DIR,
        description="Where every taskgate process on the host leases those uids (flock'ed "
        "files); one directory per host, private to root.",
    )
    cpu_seconds: int = Field(default=60, ge=1, description="CPU seconds per sandboxed process.")
    memory_bytes: int = Field(default=1024 * 1024 * 1024, ge=16 * 1024 * 1024)
    max_processes: int = Field(default=128, ge=4)
    file_size_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    default_timeout_seconds: int = Field(default=300, ge=1, description="Wall clock per task.")
    output_cap_bytes: int = Field(default=1024 * 1024, ge=1024, description="Output kept in DB.")
    network: bool = Field(default=False, description="Give sandboxed code network access.")


class ModelSettings(BaseModel):
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible API base URL, e.g. http://127.0.0.1:11434/v1."
    )
    api_key: SecretStr | None = Field(default=None, description="API key for the model provider.")
    model: str = Field(default="gpt-4o-mini", description="Default model name.")
    timeout_seconds: float = Field(default=120.0, gt=0, description="Per-call timeout.")
    max_iterations: int = Field(default=10, ge=1, description="Agent loop model calls per task.")
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="USD per 1M tokens (input, output) by model name.",
    )


class WorkerSettings(BaseModel):
    concurrency: int = Field(default=4, ge=1, description="Jobs run at once per worker process.")
    lease_seconds: float = Field(default=30.0, gt=1, description="Lease before a job is retaken.")
    poll_seconds: float = Field(default=1.0, gt=0, description="Polling fallback interval.")
    max_attempts: int = Field(default=3, ge=1, description="Attempts before a job is dead.")
    retention_hours: int = Field(default=72, ge=1, description="Finished queue rows are kept.")


class OutboundSettings(BaseModel):
    allow_private: bool = Field(default=False, description="Allow private-range targets.")
    allow_loopback: bool = Field(default=False, description="Allow loopback targets.")
    secret_keys: SecretStr | None = Field(
        default=None,
        description="Encryption keys for stored secrets: 'kid:base64key,...', first is active. "
        "Unset: derived from the JWT secret.",
    )


class DeliverySettings(BaseModel):
    retry_period_seconds: float = Field(
        default=24 * 3600, gt=0, description="How long a failing delivery is retried before dead."
    )
    base_backoff_seconds: float = Field(
        default=5.0, ge=0, description="Wait before the first retry; doubles at every attempt."
    )
    max_backoff_seconds: float = Field(
        default=3600.0, ge=0, description="Longest wait between two attempts of a delivery."
    )
    disable_after_failures: int = Field(
        default=20, ge=1, description="Consecutive failed attempts that disable a destination."
    )
    dispatch_lookback_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long the dispatcher waits for a gap in event ids to fill (a "
        "transaction that took an id earlier but commits later) before taking it as rolled back.",
    )
    request_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Whole-exchange timeout of one outbound delivery request."
    )


class SchedulerSettings(BaseModel):
    tick_seconds: float = Field(
        default=1.0, gt=0, description="Longest sleep between scheduler checks for due schedules."
    )
    batch_size: int = Field(
        default=250, ge=1, le=10_000, description="Due schedules claimed per transaction."
    )
    concurrency: int = Field(
        default=2, ge=1, le=32, description="Batches fired at once on PostgreSQL (SQLite: one)."
    )
    max_schedules_per_user: int = Field(
        default=100, ge=0, description="Schedules one user may own (paused ones count)."
    )
    min_interval_seconds: int = Field(
        default=60, ge=1, description="Shortest interval_seconds a schedule may use."
    )
    catchup_cap: int = Field(
        default=100, ge=1, description="Most missed occurrences catchup 'all' fires after downtime."
    )
    default_catchup: Literal["skip", "one", "all"] = Field(
        default="skip", description="Catch-up policy of schedules created without one."
    )
    misfire_grace_seconds: int = Field(
        default=60,
        ge=0,
        description="How late (beyond jitter) an occurrence may fire and still count as on time.",
    )


class StreamSettings(BaseModel):
    bus: Literal["auto", "memory", "postgres", "redis"] = Field(
        default="auto",
        description="How committed event ids reach every API process: auto picks Redis when "
        "redis_url is set, else PostgreSQL LISTEN/NOTIFY, else in-process (SQLite).",
    )
    ping_seconds: float = Field(default=15.0, gt=0, description="SSE comment ping interval.")
    max_streams_per_principal: int = Field(
        default=20, ge=1, description="Open SSE and WebSocket streams per user, per API process."
    )
    ws_send_queue: int = Field(
        default=1000,
        ge=1,
        description="Frames queued for a WebSocket client; past it the client is closed (1013).",
    )
    ws_max_channels: int = Field(default=100, ge=1, description="Channels per WebSocket.")
    ticket_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How long a stream ticket (POST /api/v1/stream/tickets) stays usable.",
    )
    subscriber_queue: int = Field(
        default=1000,
        ge=1,
        description="Live events buffered per stream; one further behind re-reads the table.",
    )
    backlog_page: int = Field(default=500, ge=1, description="Events read per replay query.")
    poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Look for new events this often even without a notification.",
    )
    gap_grace_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Longest wait for a missing lower event id to commit before later ones "
        "are delivered without it (PostgreSQL usually settles it sooner).",
    )
    channel: str = Field(
        default="taskgate_events", description="NOTIFY channel and Redis pub/sub channel."
    )
    direct_writes: bool = Field(
        default=True,
        description="Under uvicorn (httptools), write live SSE events straight to idle "
        "connections instead of through each stream's task: far cheaper per subscriber.",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TASKGATE_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Field(default=Path(".taskgate"), description="Embedded database and files.")
    environment: Literal["development", "production", "test"] = "development"
    log_level: str = Field(default="INFO", description="Log level.")
    log_json: bool = Field(default=True, description="JSON logs (else console).")
    redis_url: str | None = Field(
        default=None, description="Redis for shared rate limits and event fan-out."
    )
    admin_password: SecretStr | None = Field(
        default=None, description="Password for the first admin created on an empty database."
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    http: HTTPSettings = Field(default_factory=HTTPSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    governance: GovernanceSettings = Field(default_factory=GovernanceSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    streams: StreamSettings = Field(default_factory=StreamSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'taskgate.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
