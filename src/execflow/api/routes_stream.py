"""``GET /v1/stream``: the live stream (Server-Sent Events) of the key's accounts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse

from execflow.api.auth import context, visible
from execflow.api.routes_orders import PROBLEMS, Reader
from execflow.api.stream import decode_position, stream_events
from execflow.errors import ApiError

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["stream"])

_SSE = {
    200: {
        "description": "`text/event-stream`: a `ready` event, then one `order_event` per "
        "order event of the accounts, in order; each `id` is the stream position to resume "
        "from with `Last-Event-ID`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    **{k: v for k, v in PROBLEMS.items() if k in (400, 401, 403, 404, 422, 429)},
}


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses=_SSE,  # type: ignore[arg-type]
    summary="Live order events and account changes (Server-Sent Events)",
)
async def stream(
    request: Request,
    key: Reader,
    account_id: Annotated[
        list[str] | None,
        Query(
            max_length=100,
            description="accounts to follow (repeatable); default: every account of the key",
        ),
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=100_000)] = None,
) -> EventSourceResponse:
    """Events after ``Last-Event-ID`` (or from now), each account in audit-chain order."""
    ctx = context(request)
    settings = ctx.services.settings
    if account_id:
        accounts = tuple(sorted({visible(key, a, "account", a) for a in account_id}))
    elif key.all_accounts:
        message = "required for a key on every account"
        errors = [{"field": "query.account_id", "message": message}]
        raise ApiError(422, "validation_error", f"query.account_id: {message}", errors=errors)
    else:
        accounts = tuple(sorted(key.accounts))
    if len(accounts) > settings.api_stream_max_accounts:
        raise ApiError(422, "too_many_accounts", f"at most {settings.api_stream_max_accounts}")
    resumed = decode_position(last_event_id) if last_event_id else {}
    missing = tuple(a for a in accounts if a not in resumed)
    heads = await ctx.store.chain_positions(missing) if missing else {}
    positions = {a: resumed[a] if a in resumed else heads[a] for a in accounts}
    events = stream_events(ctx.store, ctx.hub, accounts, positions, settings.api_stream_recheck_s)
    return EventSourceResponse(events, ping=None, send_timeout=30)
