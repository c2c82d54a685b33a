"""``POST /v1/orders`` answered without FastAPI's per-request machinery when nothing is amiss.

Placing an order is the API's hot call. Through FastAPI it pays for the routing table,
the dependency tree (the key, its bearer credentials, the header, the body), the body
read as JSON and then validated as Python objects, and the exit stacks around them. This
shortcut, called by the ``ApiEdge`` middleware for that one method and path, checks the
same things directly: a JSON body of declared length, a genuine key with the ``trade``
scope and a token left in its rate, a well-formed ``Idempotency-Key``, a body that
``OrderIn`` accepts (one cached ``TypeAdapter.validate_json``). When all hold, it runs
the route's own code (``routes_orders.place``: idempotency, intake, ``API:CALL`` line)
and answers; when anything does not, it answers nothing and hands the request on, its
body replayed, to FastAPI, whose route then gives exactly the answer it always gave
(401, 403, 422 naming the field, 429, ...). So the shortcut only ever takes requests
FastAPI would have run, and the route stays in the OpenAPI document as it was. The key
check it made goes along in the scope (``auth.VERIFIED``): a wrong secret is hashed
once, not once here and once more in the route.

A request with an ``Origin`` header goes through FastAPI as well (CORS, when configured,
answers those there).
"""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import Message, Receive, Scope, Send

from execflow.api.auth import VERIFIED
from execflow.api.context import ApiContext
from execflow.api.keys import ApiKey
from execflow.api.keys import Scope as KeyScope
from execflow.api.routes_orders import place
from execflow.api.schemas import OrderIn
from execflow.errors import ApiError

__all__ = ["PlaceOrderShortcut"]

METHOD = "POST"
PATH = "/v1/orders"

_ORDER_IN = TypeAdapter(OrderIn)


def _order(body: bytes) -> OrderIn | None:
    """The body as ``OrderIn``, or ``None`` (FastAPI's route then names what is wrong)."""
    try:
        return _ORDER_IN.validate_json(body)
    except ValidationError:
        return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` with the messages already read from it given again first."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def _headers(scope: Scope) -> tuple[bytes | None, bytes | None, bytes | None] | None:
    """Authorization, Idempotency-Key and Content-Type; ``None`` with an Origin (CORS)."""
    authorization: bytes | None = None
    idempotency_key: bytes | None = None
    content_type: bytes | None = None
    for name, value in scope["headers"]:
        # the first of each, as ``request.headers.get`` reads them
        if name == b"authorization":
            authorization = value if authorization is None else authorization
        elif name == b"idempotency-key":
            idempotency_key = value if idempotency_key is None else idempotency_key
        elif name == b"content-type":
            content_type = value if content_type is None else content_type
        elif name == b"origin":
            return None
    return authorization, idempotency_key, content_type


class PlaceOrderShortcut:
    """Answers a flawless ``POST /v1/orders`` itself (module docstring)."""

    def __init__(self, context: ApiContext, route: BaseRoute) -> None:
        self._context = context
        self._route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """``None`` when answered; else the ``receive`` the app reads this request with."""
        headers = _headers(scope)
        if headers is None:
            return receive
        authorization, idempotency_key, content_type = headers
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return _replay(messages, receive)
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        order = _order(body)
        key = None
        if order is not None:
            key = await self._checked(scope, authorization, idempotency_key, content_type)
        ctx = self._context
        if key is None or order is None or ctx.limiter.take(key.key_id) is not None:
            # over its rate: no token was spent, FastAPI's route answers the 429
            return _replay(messages, receive)
        assert idempotency_key is not None
        scope["route"] = self._route  # the metrics' route template, as routing would set
        request = Request(scope, receive)
        response = await place(request, ctx, key, idempotency_key.decode("latin-1"), order)
        await response(scope, receive, send)
        return None

    async def _checked(
        self,
        scope: Scope,
        authorization: bytes | None,
        idempotency_key: bytes | None,
        content_type: bytes | None,
    ) -> ApiKey | None:
        if authorization is None or idempotency_key is None or content_type is None:
            return None
        if content_type.lower() != b"application/json":
            return None
        try:
            self._context.idempotency.check_key(idempotency_key.decode("latin-1"))
        except ApiError:
            return None
        # as fastapi.security.HTTPBearer parses it
        scheme, _, credentials = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            return None
        key = await self._context.verifier.verify(credentials)
        # handed on with the request: FastAPI's route does not check the token again
        scope[VERIFIED] = (credentials, key)
        if key is None or KeyScope.TRADE not in key.scopes:
            return None
        return key
