"""Who is calling: the bearer token checked, the scope required, the rate spent.

Missing, malformed, unknown, wrong or revoked token: 401 (one answer for all, so a probe
learns nothing). A genuine key without the route's scope: 403. Over its rate: 429 with
``Retry-After``. Which accounts a key may touch is checked where the account is known
(``visible``): a foreign account or an order of one is 404, exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from execflow.api.context import ApiContext
from execflow.api.keys import ApiKey, Scope
from execflow.errors import ApiError

__all__ = ["VERIFIED", "bearer", "context", "require", "visible"]

VERIFIED = "execflow.verified"
"""Scope key: ``(token, key or None)`` of a check already made for this request
(``api.shortcut``), so that a request handed on is not checked twice (scrypt again for
a wrong secret)."""

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="`Authorization: Bearer ef_<key_id>_<secret>` (execflow api-key create)",
)


def context(request: Request) -> ApiContext:
    """The app's ``ApiContext``."""
    ctx: ApiContext = request.app.state.context
    return ctx


def require(scope: Scope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency: the verified key, which must carry ``scope``."""

    async def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> ApiKey:
        ctx = context(request)
        key: ApiKey | None = None
        if credentials is not None:
            token = credentials.credentials
            checked: tuple[str, ApiKey | None] | None = request.scope.get(VERIFIED)
            if checked is not None and checked[0] == token:
                key = checked[1]
            else:
                key = await ctx.verifier.verify(token)
        if key is None:
            _denied(request, None, 401, "unauthorized")
            raise ApiError(401, "unauthorized", "a valid API key is required")
        wait_s = ctx.limiter.take(key.key_id)
        if wait_s is not None:
            _denied(request, key, 429, "rate_limited")
            raise ApiError(429, "rate_limited", "too many requests", retry_after=wait_s)
        if scope not in key.scopes:
            _denied(request, key, 403, "missing_scope")
            raise ApiError(403, "missing_scope", f"this key lacks the {scope.value!r} scope")
        return key

    return dependency


def _denied(request: Request, key: ApiKey | None, status: int, code: str) -> None:
    """A mutating call refused before it ran is an ``API:CALL`` line too (never the token)."""
    if request.method == "GET":
        return
    route = request.scope.get("route")
    context(request).log.info(
        "API:CALL",
        key_id=key.key_id if key is not None else "-",
        action=getattr(route, "name", request.url.path),
        result=status,
        code=code,
        idempotency_key=request.headers.get("idempotency-key", "-"),
    )


def visible(key: ApiKey, account_id: str | None, what: str, ident: str) -> str:
    """``account_id`` when the key may see it; else 404 as if ``ident`` did not exist."""
    if account_id is None or not key.may_see(account_id):
        raise ApiError(404, f"unknown_{what}", f"no {what} {ident!r}")
    return account_id
