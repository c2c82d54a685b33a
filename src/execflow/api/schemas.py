"""The API's request and response bodies (pydantic): what the OpenAPI document describes.

Money, prices and quantities travel as decimal strings, never JSON numbers, so nothing
is rounded through a float on either side.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AccountOut",
    "ActionOut",
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyOut",
    "EventOut",
    "LegOut",
    "ModifyIn",
    "OrderIn",
    "OrderOut",
    "OrderPage",
    "PositionOut",
    "PriceIn",
    "Problem",
    "QuoteOut",
    "QuotesOut",
]

DecimalText = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{1,12}(\.[0-9]{1,10})?$",
        max_length=23,
        description='a non-negative decimal as a string, e.g. "0.10"',
        examples=["0.10"],
    ),
]
AccountId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="`{user_type}:{user_id}`",
        examples=["live:6"],
    ),
]
Symbol = Annotated[
    str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.]+$", examples=["EURUSD"])
]
OrderTypeText = Literal["MARKET", "BUY_LIMIT", "SELL_LIMIT", "BUY_STOP", "SELL_STOP"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrderIn(_In):
    """A new order: MARKET (no price) or a pending type at ``price``, optional SL / TP."""

    account_id: AccountId
    symbol: Symbol
    side: Literal["BUY", "SELL"]
    type: OrderTypeText = "MARKET"
    qty: DecimalText
    price: DecimalText | None = Field(None, description="required for pending types")
    sl: DecimalText | None = None
    tp: DecimalText | None = None


class ModifyIn(_In):
    """A new price for a resting pending order."""

    price: DecimalText


class PriceIn(_In):
    """The client level of a stop loss or take profit."""

    price: DecimalText


class ActionOut(BaseModel):
    """A request accepted by the intake and sent to the LP (its outcome arrives later)."""

    action: str
    order_id: str
    account_id: str
    status: str
    lifecycle_id: str
    trace_id: str
    send_deferred: bool = Field(
        False, description="committed; the send to the LP is retried in the background"
    )


class LegOut(BaseModel):
    """A stop-loss or take-profit leg."""

    state: str
    price: str | None = None
    reason: str | None = None


class OrderOut(BaseModel):
    """An order (and, once filled, its position)."""

    order_id: str
    account_id: str
    symbol: str
    side: str
    type: str
    qty: str
    status: str
    requested_price: str | None = None
    cum_qty: str
    avg_px: str | None = None
    open_price: str | None = None
    close_price: str | None = None
    margin: str
    reserved_margin: str
    entry_commission: str
    exit_commission: str
    profit: str | None = None
    net_profit: str | None = None
    close_reason: str | None = None
    reason: str | None = None
    sl: LegOut
    tp: LegOut
    created_at: datetime
    updated_at: datetime
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    version: int


class EventOut(BaseModel):
    """One order event from the database, in insertion order."""

    seq: int
    event_id: str
    order_id: str
    account_id: str
    kind: str
    exec_id: str | None = None
    status: str | None = Field(None, description="the order's status after this event")
    deltas: dict[str, str] = Field(default_factory=dict)
    created_at: datetime
    chain_seq: int | None = Field(None, description="position in the account's audit chain")
    hash: str | None = Field(
        None, description="the audit-chain link (SHA-256, hex): `execflow audit verify` checks it"
    )


class OrderPage(BaseModel):
    """One page of orders, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[OrderOut]
    next_cursor: str | None = None


class PositionOut(BaseModel):
    """An open position at live quotes."""

    order_id: str
    symbol: str
    side: str
    qty: str
    open_price: str | None = None
    market_price: str | None = None
    floating_profit: str | None = Field(None, description="USD; null without a quote or rate")
    margin: str
    sl: LegOut
    tp: LegOut


class AccountOut(BaseModel):
    """Balance, margins, equity at live quotes, and open positions."""

    account_id: str
    currency: str
    group: str
    leverage: str
    balance: str
    used_margin: str
    reserved_margin: str
    free_margin: str
    floating_profit: str
    equity: str
    margin_level_pct: str | None = None
    valuation_complete: bool
    positions: list[PositionOut]
    version: int


class QuoteOut(BaseModel):
    """The latest LP quote of a symbol."""

    symbol: str
    bid: str
    ask: str


class QuotesOut(BaseModel):
    """Every latest quote."""

    items: list[QuoteOut]


class ApiKeyCreate(_In):
    """A new API key."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[ -~]+$")
    scopes: list[Literal["read", "trade", "admin"]] = Field(min_length=1, max_length=3)
    accounts: list[AccountId | Literal["*"]] = Field(min_length=1, max_length=1000)


class ApiKeyOut(BaseModel):
    """An API key without its secret."""

    key_id: str
    name: str
    scopes: list[str]
    accounts: list[str]
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyOut):
    """A new key; ``token`` is shown this once (null in a replay of the same call)."""

    token: str | None


class Problem(BaseModel):
    """RFC 9457 problem details; ``code`` repeats the last part of ``type``."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
