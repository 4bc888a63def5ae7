"""A route class for the few hottest endpoints: documented like any other, served directly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from taskgate.auth.principal import Principal
from taskgate.http.auth import ScopeCheck, get_principal
from taskgate.http.json_body import check_json

Endpoint = Callable[..., Awaitable[Response]]
M = TypeVar("M", bound=BaseModel)


class DirectRoute(APIRoute):
    """Calls ``endpoint(request)``, or ``endpoint(request, body)`` for an endpoint that also
    takes one JSON body model, and sends the ``Response`` it returns. An endpoint may also
    declare its caller with a scope alias (``principal: TasksWrite``, ``http/auth.py``): it
    gets the caller, once its API key is found to hold the scopes.

    It serves signed-in callers only: the caller is authenticated before anything else, so
    an anonymous request is a 401 whatever its body, and the endpoint's own
    ``get_principal(request)`` is the answer already resolved. The scopes are checked next,
    before the body is read, as for any route.

    FastAPI's handler would otherwise solve (empty) dependencies, decode the JSON into Python
    objects and validate those again, and look up telemetry on every request: about a fifth of
    a cached authenticated read, and more for a write. Here a body is validated by pydantic
    straight from its bytes. The OpenAPI description (request body, ``response_model``,
    ``responses``) and the error handlers, including the 400 for an invalid body, are those of
    any route.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        dependant = self.dependant
        request_name = dependant.request_param_name
        scoped = [d for d in dependant.dependencies if isinstance(d.call, ScopeCheck)]
        if (
            len(scoped) != len(dependant.dependencies)
            or len(scoped) > 1
            or dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or len(dependant.body_params) > 1
            or request_name is None
        ):
            raise TypeError(
                f"{self.path}: a DirectRoute endpoint takes the request and at most a JSON body"
            )
        endpoint = cast(Endpoint, self.endpoint)
        check: ScopeCheck | None = None
        caller_name = ""
        if scoped:
            check, caller_name = cast(ScopeCheck, scoped[0].call), scoped[0].name or ""

        async def caller(request: Request) -> dict[str, Principal]:
            principal = await get_principal(request)
            if check is None:
                return {}
            check.check(principal)
            return {caller_name: principal}

        if not dependant.body_params:

            async def handle(request: Request) -> Response:
                if check is None:  # GET /users/me: the hottest read, no call more than needed
                    await get_principal(request)
                    return await endpoint(request)
                return await endpoint(request, **await caller(request))

            return handle

        field = dependant.body_params[0]
        model = field.field_info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{self.path}: a DirectRoute body must be a pydantic model")
        body_name = field.name

        async def handle_with_body(request: Request) -> Response:
            arguments: dict[str, Any] = await caller(request)
            body = read_body(model, await request.body())
            return await endpoint(**arguments, **{request_name: request, body_name: body})

        return handle_with_body


def read_body(model: type[M], raw: bytes) -> M:
    """``raw`` validated as ``model``; an empty, malformed, non-standard (``check_json``) or
    invalid body is the same 400 (RequestValidationError, fields under ``body``) as any route
    answers."""
    if not raw:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing])
    check_json(raw)
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        problems = []
        for problem in error.errors(include_url=False):
            entry = dict(problem)
            entry["loc"] = ("body", *problem["loc"])
            if problem["type"] == "json_invalid":
                # pydantic says where the JSON broke, e.g. "EOF while parsing a value at …".
                entry["msg"] = str(problem.get("ctx", {}).get("error", problem["msg"]))
            problems.append(entry)
        raise RequestValidationError(problems) from None
