"""Keeping a workflow's secrets out of what its steps store and stream."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from taskgate.outbound.secretbox import REDACTED


def redact_secrets(value: Any, secret_values: Iterable[str]) -> Any:
    """Replace every occurrence of a secret in ``value`` (deeply) with ``"***"``.

    Also catches a secret as it appears JSON-escaped or URL-encoded. Non-string leaves
    (numbers) are left alone; empty secrets are ignored. Use on step input, output and
    error messages before they are stored or streamed.
    """
    variants: set[str] = set()
    for secret in secret_values:
        if not secret:
            continue
        variants.add(secret)
        variants.add(json.dumps(secret, ensure_ascii=False)[1:-1])
        variants.add(urllib.parse.quote(secret, safe=""))
        variants.add(urllib.parse.quote_plus(secret))
    if not variants:
        return value
    pattern = re.compile("|".join(re.escape(v) for v in sorted(variants, key=len, reverse=True)))
    return _redact(value, pattern)


def _redact(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if isinstance(value, Mapping):
        return {_redact(k, pattern): _redact(v, pattern) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(item, pattern) for item in value]
    if isinstance(value, tuple):
        return tuple(_redact(item, pattern) for item in value)
    return value
