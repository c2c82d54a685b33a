"""``/v1/orders``: place, change and close orders; read one, its events, and lists."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from execflow.api.auth import context, require, visible
from execflow.api.calls import Outcome, answer_of, intake_answer, mutate
from execflow.api.context import ApiContext
from execflow.api.idempotency import Answer
from execflow.api.keys import ApiKey, Scope
from execflow.api.queries import find_orders, order_account, read_events, read_order
from execflow.api.schemas import (
    ActionOut,
    EventOut,
    ModifyIn,
    OrderIn,
    OrderOut,
    OrderPage,
    PriceIn,
    Problem,
)
from execflow.api.views import action_out, event_out, order_out
from execflow.backends.api_store import OrderQuery
from execflow.domain.enums import OrderStatus, OrderType
from execflow.errors import ApiError
from execflow.pipeline.intake import IntakeResult, OrderIntake

__all__ = ["PROBLEMS", "place", "router"]

router = APIRouter(prefix="/v1", tags=["orders"])

OrderId = Annotated[
    str,
    Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$", examples=["3163458366000"]),
]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="one unique string per intended call (a UUID): a retry with the same "
        "key and body gets the first answer, never a second order",
    ),
]
Trader = Annotated[ApiKey, Depends(require(Scope.TRADE))]
Reader = Annotated[ApiKey, Depends(require(Scope.READ))]
_Run = Callable[[OrderIntake], Awaitable[IntakeResult]]

_PROBLEM_SCHEMA = {"schema": {"$ref": "#/components/schemas/Problem"}}
PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {
        "description": text,
        "model": Problem,  # puts Problem into the components
        "content": {"application/problem+json": _PROBLEM_SCHEMA},
    }
    for status, text in (
        (400, "Bad request"),
        (401, "Missing, unknown or revoked API key"),
        (403, "The key lacks the scope"),
        (404, "No such order or account for this key"),
        (409, "The order's state does not allow it, or the same Idempotency-Key still runs"),
        (413, "Body too large"),
        (422, "Invalid request, or refused by the intake (code: insufficient_margin, ...)"),
        (429, "Rate limit: see Retry-After"),
    )
}


def _action(result: IntakeResult, account_id: str, status: int) -> Answer:
    def accepted() -> Answer:
        out = action_out(result, account_id)
        headers = {"Location": f"/v1/orders/{out.order_id}"} if status == 201 else {}
        return answer_of(status, out, headers)

    return intake_answer(result, accepted)


def _utc(value: datetime | None) -> datetime | None:
    """A time without an offset is taken as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _field_error(field: str, message: str) -> ApiError:
    errors = [{"field": field, "message": message}]
    return ApiError(422, "validation_error", f"{field}: {message}", errors=errors)


_FROM_PLACED = {"order_id": "$response.body#/order_id"}
_PLACED_LINKS = {
    name: {"operationId": name, "parameters": _FROM_PLACED}
    for name in ("get_order", "get_order_events", "cancel_order", "close_position")
}


@router.post(
    "/orders",
    status_code=201,
    response_model=ActionOut,
    responses={**PROBLEMS, 201: {"description": "Sent to the LP", "links": _PLACED_LINKS}},
    summary="Place an order (market or pending, optional SL / TP)",
)
async def place_order(
    body: OrderIn, request: Request, key: Trader, idempotency_key: IdempotencyKey
) -> Response:
    """201 once the intake reserved the margin and sent the order to the LP."""
    return await place(request, context(request), key, idempotency_key, body)


async def place(
    request: Request, ctx: ApiContext, key: ApiKey, idempotency_key: str, body: OrderIn
) -> Response:
    """``place_order`` once its request is checked (by FastAPI, or ``api.shortcut``)."""

    async def call(outcome: Outcome) -> Answer:
        outcome.account_id = visible(key, body.account_id, "account", body.account_id)
        kind = OrderType(body.type)
        if kind is OrderType.MARKET:
            if body.price is not None:
                raise _field_error("body.price", "a market order takes no price")
            result = await ctx.intake.open_market(
                body.account_id, body.symbol, body.side, body.qty, body.sl, body.tp
            )
        else:
            if body.price is None:
                raise _field_error("body.price", f"required for {kind.value}")
            if kind.side is not None and kind.side.value != body.side:
                detail = f"{kind.value} is a {kind.side.value} order"
                raise ApiError(422, "side_does_not_match_order_type", detail)
            result = await ctx.intake.place_pending(
                body.account_id, body.symbol, kind, body.qty, body.price, body.sl, body.tp
            )
        outcome.order_id = result.order_id
        return _action(result, body.account_id, 201)

    return await mutate(request, ctx, key, idempotency_key, "place_order", body, call)


async def _on_order(
    request: Request,
    key: ApiKey,
    idempotency_key: str,
    order_id: str,
    action: str,
    body: BaseModel | None,
    run: _Run,
) -> Response:
    """A change to an existing order: found, visible to the key, then the intake."""
    ctx = context(request)

    async def call(outcome: Outcome) -> Answer:
        outcome.order_id = order_id
        account_id = await order_account(ctx.services, order_id)
        outcome.account_id = visible(key, account_id, "order", order_id)
        return _action(await run(ctx.intake), outcome.account_id, 202)

    return await mutate(request, ctx, key, idempotency_key, action, body, call)


@router.post(
    "/orders/{order_id}/modify",
    status_code=202,
    response_model=ActionOut,
    responses=PROBLEMS,
    summary="Move a resting pending order to a new price",
)
async def modify_order(
    order_id: OrderId,
    body: ModifyIn,
    request: Request,
    key: Trader,
    idempotency_key: IdempotencyKey,
) -> Response:
    """202: the modification was sent to the LP."""
    return await _on_order(
        request,
        key,
        idempotency_key,
        order_id,
        "modify_order",
        body,
        lambda intake: intake.modify_pending(order_id, body.price),
    )


@router.post(
    "/orders/{order_id}/cancel",
    status_code=202,
    response_model=ActionOut,
    responses=PROBLEMS,
    summary="Cancel a resting pending order",
)
async def cancel_order(
    order_id: OrderId, request: Request, key: Trader, idempotency_key: IdempotencyKey
) -> Response:
    """202: the cancel was sent to the LP."""
    return await _on_order(
        request,
        key,
        idempotency_key,
        order_id,
        "cancel_order",
        None,
        lambda intake: intake.cancel_pending(order_id),
    )


@router.post(
    "/orders/{order_id}/close",
    status_code=202,
    response_model=ActionOut,
    responses=PROBLEMS,
    summary="Close an open position at market",
)
async def close_position(
    order_id: OrderId, request: Request, key: Trader, idempotency_key: IdempotencyKey
) -> Response:
    """202: the close was sent to the LP."""
    return await _on_order(
        request,
        key,
        idempotency_key,
        order_id,
        "close_position",
        None,
        lambda intake: intake.close(order_id),
    )


def _leg_routes(leg: str) -> None:
    """PUT and DELETE ``/orders/{order_id}/sl`` (or ``/tp``)."""
    name = "stop loss" if leg == "sl" else "take profit"

    @router.put(
        f"/orders/{{order_id}}/{leg}",
        status_code=202,
        response_model=ActionOut,
        responses=PROBLEMS,
        summary=f"Set the {name} of an open position",
        name=f"set_{leg}",
    )
    async def set_leg(
        order_id: OrderId,
        body: PriceIn,
        request: Request,
        key: Trader,
        idempotency_key: IdempotencyKey,
    ) -> Response:
        def run(intake: OrderIntake) -> Awaitable[IntakeResult]:
            if leg == "sl":
                return intake.set_sl(order_id, body.price)
            return intake.set_tp(order_id, body.price)

        return await _on_order(request, key, idempotency_key, order_id, f"set_{leg}", body, run)

    @router.delete(
        f"/orders/{{order_id}}/{leg}",
        status_code=202,
        response_model=ActionOut,
        responses=PROBLEMS,
        summary=f"Cancel the {name} of an open position",
        name=f"cancel_{leg}",
    )
    async def cancel_leg(
        order_id: OrderId, request: Request, key: Trader, idempotency_key: IdempotencyKey
    ) -> Response:
        def run(intake: OrderIntake) -> Awaitable[IntakeResult]:
            return intake.cancel_sl(order_id) if leg == "sl" else intake.cancel_tp(order_id)

        return await _on_order(request, key, idempotency_key, order_id, f"cancel_{leg}", None, run)


_leg_routes("sl")
_leg_routes("tp")


# -- reads -------------------------------------------------------------------------------------


@router.get(
    "/orders/{order_id}", response_model=OrderOut, responses=PROBLEMS, summary="Read an order"
)
async def get_order(order_id: OrderId, request: Request, key: Reader) -> OrderOut:
    """The order as it is now."""
    ctx = context(request)
    order = await read_order(ctx.services, order_id)
    visible(key, None if order is None else order.account_id, "order", order_id)
    assert order is not None
    return order_out(order)


@router.get(
    "/orders/{order_id}/events",
    response_model=list[EventOut],
    responses=PROBLEMS,
    summary="An order's events, oldest first",
)
async def get_order_events(order_id: OrderId, request: Request, key: Reader) -> list[EventOut]:
    """From the database (the durable record); a just-placed order's events follow shortly."""
    ctx = context(request)
    account_id = await order_account(ctx.services, order_id)
    visible(key, account_id, "order", order_id)
    return [event_out(e) for e in await read_events(ctx.services, order_id)]


@router.get(
    "/orders",
    response_model=OrderPage,
    responses=PROBLEMS,
    summary="List orders (newest first) by account, status, symbol, time",
)
async def list_orders(
    request: Request,
    key: Reader,
    account_id: Annotated[str | None, Query(max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")] = None,
    status: Annotated[list[OrderStatus] | None, Query()] = None,
    symbol: Annotated[str | None, Query(max_length=32, pattern=r"^[A-Za-z0-9_.]+$")] = None,
    since: Annotated[datetime | None, Query(description="last change at or after")] = None,
    until: Annotated[datetime | None, Query(description="last change before")] = None,
    cursor: Annotated[str | None, Query(max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> OrderPage:
    """Orders of the key's accounts (or of one of them), from the database."""
    ctx = context(request)
    if account_id is not None:
        accounts: tuple[str, ...] | None = (visible(key, account_id, "account", account_id),)
    else:
        accounts = None if key.all_accounts else tuple(sorted(key.accounts))
    query = OrderQuery(
        accounts=accounts,
        status=tuple(s.value for s in status or ()),
        symbol=symbol,
        since=_utc(since),
        until=_utc(until),
        after=cursor,
        limit=limit,
    )
    page = await find_orders(ctx.store, query)
    return OrderPage(items=[order_out(o) for o in page.orders], next_cursor=page.next_cursor)
