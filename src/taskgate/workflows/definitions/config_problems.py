"""A pydantic ``ValidationError`` read back as problems the author of a graph can act on.

Each problem is a ``(field path, message)`` pair whose path follows the body as written
(``graph.nodes[2].config.headers``) and never names the union member pydantic tried.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

# pydantic names the member of a union in an error's location; a user never wrote it.
_UNION_TAG = re.compile(r".*[\[\-].*|float|int|str|bool|list|dict|none")


def config_problems(
    path: str, model: type[BaseModel], exc: ValidationError, data: Any
) -> list[tuple[str, str]]:
    """A problem for each failing field of ``data`` (as ``model``), located under ``path``."""
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for error in exc.errors(include_url=False):
        where = path + _location(error["loc"], data)
        if where in seen:
            continue  # one message per field, not one per member of a union
        seen.add(where)
        if error["type"] == "extra_forbidden":
            allowed = [f.alias or name for name, f in model.model_fields.items()]
            message = f"unknown field (allowed: {', '.join(allowed)})"
        elif error["type"] == "missing":
            fields = [part for part in error["loc"] if isinstance(part, str)]
            message = f"{fields[-1] if fields else 'field'} is required"
        else:
            message = error["msg"].removeprefix("Value error, ")
        problems.append((where, message))
    return problems


def _location(loc: tuple[int | str, ...], data: Any) -> str:
    """``loc`` as a path; parts found in the user's data are always kept."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            found = isinstance(data, list) and -len(data) <= part < len(data)
            data = data[part] if found else None
        elif isinstance(data, Mapping) and part in data:
            out += f".{part}"
            data = data[part]
        elif not _UNION_TAG.fullmatch(part):
            out += f".{part}"
            data = None
    return out
