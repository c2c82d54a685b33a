"""Domain objects -> response bodies (the one place the API's JSON shapes are filled)."""

from __future__ import annotations

from decimal import Decimal

from execflow.api.queries import AccountView
from execflow.api.schemas import (
    AccountOut,
    ActionOut,
    ApiKeyOut,
    EventOut,
    LegOut,
    OrderOut,
    PositionOut,
    QuoteOut,
)
from execflow.backends.api_store import ApiKeyRecord
from execflow.backends.database import StoredEvent
from execflow.domain.models import Leg, Order, Quote
from execflow.pipeline.intake import IntakeResult

__all__ = ["account_out", "action_out", "event_out", "key_out", "order_out", "quote_out"]


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def leg_out(leg: Leg) -> LegOut:
    """A leg's state and client level."""
    return LegOut(state=leg.state.value, price=_s(leg.price), reason=leg.reason)


def order_out(order: Order) -> OrderOut:
    """The public fields of an order (no ledger, no outbox)."""
    return OrderOut(
        order_id=order.order_id,
        account_id=order.account_id,
        symbol=order.symbol,
        side=order.side.value,
        type=order.order_type.value,
        qty=str(order.qty),
        status=order.status.value,
        requested_price=_s(order.new_price or order.requested_price),
        cum_qty=str(order.cum_qty),
        avg_px=_s(order.avg_px),
        open_price=_s(order.open_price),
        close_price=_s(order.close_price),
        margin=str(order.margin),
        reserved_margin=str(order.reserved_margin),
        entry_commission=str(order.entry_commission),
        exit_commission=str(order.exit_commission),
        profit=_s(order.profit),
        net_profit=_s(order.net_profit),
        close_reason=None if order.close_reason is None else order.close_reason.value,
        reason=order.reason,
        sl=leg_out(order.sl),
        tp=leg_out(order.tp),
        created_at=order.created_at,
        updated_at=order.updated_at,
        opened_at=order.opened_at,
        closed_at=order.closed_at,
        version=order.version,
    )


def event_out(event: StoredEvent) -> EventOut:
    """An event with the order's status after it, its money deltas and chain hash."""
    payload = event.payload
    order = payload.get("order")
    status = order.get("status") if isinstance(order, dict) else None
    deltas = payload.get("deltas")
    return EventOut(
        seq=event.seq,
        event_id=event.event_id,
        order_id=event.order_id,
        account_id=event.account_id,
        kind=event.kind,
        exec_id=event.exec_id,
        status=status if isinstance(status, str) else None,
        deltas={k: str(v) for k, v in deltas.items()} if isinstance(deltas, dict) else {},
        created_at=event.created_at,
        chain_seq=event.chain_seq,
        hash=event.chain_hash,
    )


def account_out(view: AccountView) -> AccountOut:
    """An account at live quotes."""
    account, value = view.account, view.value
    level = value.margin_level_pct
    return AccountOut(
        account_id=account.account_id,
        currency=account.currency,
        group=account.group,
        leverage=str(account.leverage),
        balance=str(value.balance),
        used_margin=str(value.used_margin),
        reserved_margin=str(value.reserved_margin),
        free_margin=str(value.free_margin),
        floating_profit=str(value.floating_profit),
        equity=str(value.equity),
        margin_level_pct=_s(level),
        valuation_complete=value.complete,
        positions=[
            PositionOut(
                order_id=p.order.order_id,
                symbol=p.order.symbol,
                side=p.order.side.value,
                qty=str(p.order.cum_qty or p.order.qty),
                open_price=_s(p.order.open_price),
                market_price=_s(p.market_price),
                floating_profit=_s(p.profit),
                margin=str(p.order.margin),
                sl=leg_out(p.order.sl),
                tp=leg_out(p.order.tp),
            )
            for p in value.positions
        ],
        version=account.version,
    )


def action_out(result: IntakeResult, account_id: str) -> ActionOut:
    """An accepted intake action."""
    assert result.order_id is not None and result.lifecycle_id is not None
    return ActionOut(
        action=result.action,
        order_id=result.order_id,
        account_id=account_id,
        status=result.status or "",
        lifecycle_id=result.lifecycle_id,
        trace_id=result.trace_id,
        send_deferred=result.send_deferred,
    )


def quote_out(quote: Quote) -> QuoteOut:
    """A quote."""
    return QuoteOut(symbol=quote.symbol, bid=str(quote.bid), ask=str(quote.ask))


def key_out(record: ApiKeyRecord) -> ApiKeyOut:
    """A key without its secret or hash."""
    return ApiKeyOut(
        key_id=record.key_id,
        name=record.name,
        scopes=list(record.scopes),
        accounts=list(record.accounts),
        created_at=record.created_at,
        revoked_at=record.revoked_at,
    )
