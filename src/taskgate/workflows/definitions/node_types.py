"""Config schemas of the workflow node types, and the options every node accepts.

Every string inside a node's ``config`` is a template (see ``templating``), so fields that
hold user text are plain ``str`` here; a field that must be a number accepts a template string
only where a dynamic value is plausible (``delay.seconds``). The executor renders a config,
then validates the rendered value again with ``validate_config``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

_TEMPLATE_MARKERS = ("{{", "{%", "{#")

NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]


def _has_template(value: str) -> bool:
    return any(marker in value for marker in _TEMPLATE_MARKERS)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogConfig(_Config):
    """``log`` (alias ``logging``): write a message to the execution's log."""

    # Django Automate's ``logging`` node spells the field ``msg``.
    message: str = Field(validation_alias=AliasChoices("message", "msg"))
    level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("level", mode="before")
    @classmethod
    def _normalise_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return "warning" if value == "warn" else value
        return value


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class HttpRequestConfig(_Config):
    """``http.request``: one outbound HTTP call (the executor applies the egress policy)."""

    url: NonEmptyStr
    method: HttpMethod = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    # ``json`` would shadow ``BaseModel.json``; the wire name stays ``json``.
    json_body: Any = Field(default=None, alias="json")
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None, min_length=1
    )

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if _has_template(value):
            return value  # checked again once rendered
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _one_body(self) -> HttpRequestConfig:
        if self.body is not None and self.json_body is not None:
            raise ValueError("give either body or json, not both")
        return self


class ScriptSpec(_Config):
    language: Literal["bash", "python"]
    content: NonEmptyStr


Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class TaskConfig(_Config):
    """``task``: submit a task: a text ``query``, a ``script`` or a list of ``commands``."""

    query: NonEmptyStr | None = None
    script: ScriptSpec | None = None
    commands: list[NonEmptyStr] | None = Field(default=None, min_length=1, max_length=50)
    timeout_seconds: int | None = Field(default=None, ge=1, le=86_400)
    labels: list[Label] | dict[Label, str] | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_shape(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, list | dict):
            raise ValueError("must be a list of labels or an object of label: value")
        return value

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> TaskConfig:
        given = [
            name
            for name, value in (
                ("query", self.query),
                ("script", self.script),
                ("commands", self.commands),
            )
            if value is not None
        ]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"give exactly one of query, script or commands (found: {found})")
        return self


class LlmPromptConfig(_Config):
    """``llm.prompt``: one chat completion; ``model`` defaults to the server's default."""

    prompt: NonEmptyStr
    system: str | None = None
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2)


class ConditionConfig(_Config):
    """``condition``: a template expression; its truth picks the ``true``/``false`` edges."""

    expression: NonEmptyStr


class TransformConfig(_Config):
    """``transform``: its output is ``template`` rendered (any JSON; string leaves render)."""

    template: Any = Field(...)


class DelayConfig(_Config):
    """``delay``: wait before the children run."""

    seconds: float | str

    @field_validator("seconds", mode="before")
    @classmethod
    def _number_or_template(cls, value: Any) -> Any:
        if isinstance(value, str) and not _has_template(value):
            try:
                return float(value)
            except ValueError:
                raise ValueError("must be a number of seconds or a template") from None
        return value

    @field_validator("seconds")
    @classmethod
    def _in_range(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not 0 <= value <= 86_400:
            raise ValueError("must be between 0 and 86400 seconds")
        return value


class ApprovalConfig(_Config):
    """``approval``: wait for a human decision; rejected or timed out fails the step."""

    message: NonEmptyStr
    approvers: list[NonEmptyStr] = Field(default_factory=list)
    timeout_seconds: int = Field(default=86_400, ge=1, le=30 * 86_400)


class NotifyConfig(_Config):
    """``notify``: send a message through a destination (``/api/v1/destinations``)."""

    destination_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    message: str | None = None


NODE_TYPES: dict[str, type[BaseModel]] = {
    "log": LogConfig,
    "http.request": HttpRequestConfig,
    "task": TaskConfig,
    "llm.prompt": LlmPromptConfig,
    "condition": ConditionConfig,
    "transform": TransformConfig,
    "delay": DelayConfig,
    "approval": ApprovalConfig,
    "notify": NotifyConfig,
}

TYPE_ALIASES: dict[str, str] = {"logging": "log"}


def canonical_type(name: str) -> str:
    """The canonical name of a node type (``"logging"`` → ``"log"``).

    Raises ``ValueError`` for a type that does not exist.
    """
    canonical = TYPE_ALIASES.get(name, name)
    if canonical not in NODE_TYPES:
        known = ", ".join(sorted([*NODE_TYPES, *TYPE_ALIASES]))
        raise ValueError(f"unknown node type {name!r} (known: {known})")
    return canonical


def validate_config(type_name: str, config: Any) -> dict[str, Any]:
    """Validate a node's config; return it as JSON data with the defaults filled in.

    Raises ``ValueError`` for an unknown type and ``pydantic.ValidationError`` for a bad
    config.
    """
    model = NODE_TYPES[canonical_type(type_name)]
    return model.model_validate(config).model_dump(mode="json", by_alias=True)


class RetryPolicy(BaseModel):
    """A node's ``retries`` option: how many attempts, and the wait between them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=1, ge=1, le=10)
    backoff_seconds: float = Field(default=1.0, ge=0, le=3600)

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2, 3, …): the backoff doubles, at most 1 h."""
        if attempt <= 1:
            return 0.0
        return float(min(self.backoff_seconds * 2 ** (attempt - 2), 3600.0))


MAX_NODE_TIMEOUT_SECONDS = 86_400
