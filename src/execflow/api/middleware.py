"""ASGI middleware: the body size limit and per-route metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so a streamed body is counted as it arrives and
the Server-Sent Events stream is passed through untouched.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from execflow.api.problems import problem_response
from execflow.metrics import Metrics

__all__ = ["BodyLimit", "RequestMetrics"]


class BodyLimit:
    """413 for a body over ``max_bytes`` (by Content-Length, or counted while read).

    Sits inside the app's exception handlers, so a streamed body that grows too large
    mid-read is answered by them as a problem too.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # an HTTPException passes FastAPI's body parsing as it is (any other
                    # error there becomes a 400); the app's handler renders the problem
                    raise HTTPException(413, f"the body is limited to {self.max_bytes} bytes")
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the body is limited to {self.max_bytes} bytes"
        response = problem_response(413, "body_too_large", detail, instance=scope.get("path"))
        await response(scope, receive, send)


class RequestMetrics:
    """Counts and times every call by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.metrics is None:
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = {"code": 500}

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            self.metrics.api_call(
                scope.get("method", "?"), _route(scope), status["code"], perf_counter() - started
            )


def _route(scope: Scope) -> str:
    """The matched route's template (``/v1/orders/{order_id}``), never the raw path."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
