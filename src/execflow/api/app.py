"""``create_app(context)``: the FastAPI application of the platform API (DESIGN §10).

FastAPI does the HTTP work (routing, validation, the OpenAPI document at
``/openapi.json``); this package maps requests to the intake and the read queries.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from execflow import __version__
from execflow.api import (
    routes_accounts,
    routes_admin,
    routes_console,
    routes_health,
    routes_operator,
    routes_ops,
    routes_orders,
    routes_stream,
)
from execflow.api.context import ApiContext
from execflow.api.middleware import ApiEdge
from execflow.api.problems import problem_response, validation_errors
from execflow.api.shortcut import PlaceOrderShortcut
from execflow.errors import ApiError

__all__ = ["create_app"]

_DESCRIPTION = """\
HTTP/JSON edge of execflow: place, change and close orders through the order intake;
read orders, their events, accounts and quotes.

* Authentication: `Authorization: Bearer ef_<key_id>_<secret>` (`execflow api-key create`).
  Scopes `read`, `trade`, `admin`; a key sees only its accounts (others answer 404).
* Every mutating call needs an `Idempotency-Key` header: the same key and body get the
  first answer again (24 h), never a second order; the same key with another body: 422.
* Errors are RFC 9457 problem details (`application/problem+json`); `code` is stable
  (`insufficient_margin`, `unknown_symbol`, `validation_error`, ...).
* Amounts, prices and quantities are decimal strings.
* The ops console (`/console/`, not in this document) is a page over the admin routes.
"""


def create_app(context: ApiContext) -> FastAPI:
    """The application, bound to ``context`` (services, intake, key store)."""
    settings = context.services.settings
    app = FastAPI(
        title="execflow platform API",
        version=__version__,
        description=_DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        # operationIds are the route names (place_order, get_order, ...): stable for
        # clients and for the OpenAPI links between them
        generate_unique_id_function=lambda route: route.name,
        # FastAPI's OpenTelemetry hooks: unused here (the API has its own metrics and
        # log lines), and left on they ask OpenTelemetry for its providers every request
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.context = context
    routers = (
        routes_orders,
        routes_accounts,
        routes_stream,
        routes_admin,
        routes_operator,
        routes_ops,
    )
    for module in (*routers, routes_health, routes_console):
        app.include_router(module.router)
    _handlers(app, context)
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.api_cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        )
    # the route object routing would put into the scope (``app.routes`` holds the
    # included routers as such, not their routes)
    [placing] = [r for r in routes_orders.router.routes if getattr(r, "name", "") == "place_order"]
    app.add_middleware(
        ApiEdge,
        max_bytes=settings.api_max_body_bytes,
        metrics=context.services.metrics,
        shortcut=PlaceOrderShortcut(context, placing),
    )
    return app


def _handlers(app: FastAPI, context: ApiContext) -> None:
    log = context.log

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        headers = {}
        if "retry_after" in exc.fields:
            headers["Retry-After"] = str(exc.fields["retry_after"])
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        extra = {"errors": exc.fields["errors"]} if "errors" in exc.fields else None
        return problem_response(
            exc.status,
            exc.code,
            exc.detail,
            instance=request.url.path,
            headers=headers,
            extra=extra,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = validation_errors(exc.errors())
        fields = ", ".join(e["field"] for e in errors)
        return problem_response(
            422,
            "validation_error",
            f"invalid: {fields}",
            instance=request.url.path,
            extra={"errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        code = codes.get(exc.status_code, "http_error")
        headers: dict[str, Any] = dict(exc.headers or {})
        return problem_response(
            exc.status_code, code, str(exc.detail), instance=request.url.path, headers=headers
        )

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        log.failure("API:ERROR", exc=exc, method=request.method, path=request.url.path)
        return problem_response(500, "internal_error", instance=request.url.path)
