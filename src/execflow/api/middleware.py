"""ASGI middleware: the body size limit, per-route metrics and the place-order shortcut.

Pure ASGI (not ``BaseHTTPMiddleware``) so a streamed body is counted as it arrives and
the Server-Sent Events stream is passed through untouched. One class, not one per
concern: every layer is a call and a closure per request on the API's hottest path.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from execflow.api.problems import problem_response
from execflow.api.shortcut import METHOD, PATH, PlaceOrderShortcut
from execflow.metrics import Metrics

__all__ = ["ApiEdge"]


class ApiEdge:
    """413 for a body over ``max_bytes``; every call counted and timed by route and status.

    ``POST /v1/orders`` is offered to ``shortcut`` first (``api.shortcut``), which answers
    it or hands it on to the app.

    The limit goes by Content-Length when the request declares one (the HTTP server then
    reads exactly that many bytes); a body without it (chunked) is counted as it is read.
    That count sits inside the app's exception handlers, so a streamed body that grows too
    large mid-read is answered by them as a problem too.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        metrics: Metrics | None,
        shortcut: PlaceOrderShortcut | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.shortcut = shortcut

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        started = perf_counter()
        status = 500

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            limited = self._limited(scope, receive)
            if limited is None:
                detail = f"the body is limited to {self.max_bytes} bytes"
                response = problem_response(
                    413, "body_too_large", detail, instance=scope.get("path")
                )
                await response(scope, receive, tracked)
            else:
                if (
                    limited is receive
                    and self.shortcut is not None
                    and scope["path"] == PATH
                    and scope["method"] == METHOD
                ):
                    # a body of declared length: the place-order shortcut may answer it
                    handed_on = await self.shortcut(scope, receive, tracked)
                    if handed_on is None:
                        return
                    limited = handed_on
                await self.app(scope, limited, tracked)
        finally:
            if metrics is not None:
                metrics.api_call(
                    scope.get("method", "?"), _route(scope), status, perf_counter() - started
                )

    def _limited(self, scope: Scope, receive: Receive) -> Receive | None:
        """``receive`` as the app should read it; ``None`` when the declared size is over."""
        declared: int | None = None
        chunked = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return None
                if declared > self.max_bytes:
                    return None
            elif name == b"transfer-encoding":
                chunked = True
        if declared is not None and not chunked:
            return receive
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

        return counted


def _route(scope: Scope) -> str:
    """The matched route's template (``/v1/orders/{order_id}``), never the raw path."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
