"""Hot internal endpoints served as plain Starlette routes and documented by FastAPI.

Issue 11, lever 3 ("cheaper internal calls"). FastAPI's per-request machinery costs about 70 µs of CPU
per call: matching through included routers, solving dependencies, serializing the answer. That is
about a quarter of the cheapest internal RPC: ``POST /chunks/exists`` of one digest took 300 µs of
chunk-server CPU as a FastAPI route and 230 µs as a Starlette ``Route`` (``python -m
benchmarks.rpc_cost``). Every small write makes several such calls.

A *fast route* is a handler ``async def handler(request) -> Response`` that parses its own input
(``shared.bodies``, ``shared.protocol``) and is registered twice:

* as a FastAPI route, so that it stays in the OpenAPI: documented, and fuzzed by schemathesis
  (tests/test_api_fuzz.py);
* as a Starlette :class:`Route` put in front of the app's routes. This is the one that serves it.

The app's middleware (cluster auth, body limits, metrics, request ids) and its exception handlers
(``shared.errors.install_error_handlers``) wrap both alike, so errors are the same JSON ``{"error"}``.
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from shared.bodies import JSON_BODY_LIMIT, read_body
from shared.errors import BadRequest, validation_message

Handler = Callable[[Request], Awaitable[Response]]


class _NamedRoute(Route):
    """A Starlette route that records itself in ``scope["route"]`` as FastAPI's do, so the metrics
    label it by its template (``shared.metrics.MetricsMiddleware``)."""

    def matches(self, scope):
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


class FastRoutes:
    """The fast routes of one service: ``@fast.route(path, methods, **fastapi_kwargs)`` on a handler,
    then :meth:`install` once the app has its routers."""

    def __init__(self, router: APIRouter) -> None:
        self.router = router
        self.routes: list[Route] = []

    def route(self, path: str, methods: list[str], **fastapi_kwargs: Any) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``methods`` on ``path``; ``fastapi_kwargs`` (``openapi_extra``,
        ``status_code``, ``summary``, ...) only shape its OpenAPI entry."""

        def register(handler: Handler) -> Handler:
            self.router.add_api_route(path, handler, methods=methods, **fastapi_kwargs)
            self.routes.append(_NamedRoute(path, handler, methods=methods))
            return handler

        return register

    def install(self, app: FastAPI) -> None:
        """Put the fast routes in front of every other route of ``app``."""
        app.router.routes[0:0] = self.routes


async def read_model(request: Request, model: type[BaseModel], limit: int = JSON_BODY_LIMIT) -> Any:
    """The JSON body as ``model``. Raises :class:`BadRequest` (400, the message FastAPI's validation
    gives) when it is not valid JSON or not that shape, :class:`PayloadTooLarge` past ``limit`` bytes."""
    body = await read_body(request, limit)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise BadRequest(validation_message(exc.errors())) from None


def json_body_doc(model: type[BaseModel]) -> dict:
    """``openapi_extra`` declaring ``model`` as the JSON request body (for a fast route that parses it
    with :func:`read_model`)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def query_param(request: Request, name: str, pattern: str | None = None) -> str:
    """The required query parameter ``name``, which must fully match ``pattern`` when one is given.
    Raises :class:`BadRequest`."""
    value = request.query_params.get(name)
    if value is None:
        raise BadRequest(f"invalid request: {name}: Field required")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        raise BadRequest(f"invalid request: {name}: String should match pattern '{pattern}'")
    return value
