"""The read side shared by the API and the CLI: an order, its events, an account, quotes.

An order is read live from the state store (found through its lifecycle record), falling
back to its database snapshot; its events come from the database (the durable record,
written by the db writer a few ms behind). Listings read the database's snapshots.
Nothing here knows about HTTP or terminals: both edges render what these return.
"""

from __future__ import annotations

from dataclasses import dataclass

from execflow.backends.api_store import ApiStore, OrderQuery
from execflow.backends.database import OrderRecord, StoredEvent
from execflow.domain.codec import account_from_dict, instrument_from_dict, order_from_dict
from execflow.domain.enums import OrderStatus
from execflow.domain.models import Account, Order, Quote
from execflow.domain.valuation import AccountValue, account_value, position_value
from execflow.pipeline.decoded import quote_of
from execflow.pipeline.services import Services

__all__ = [
    "AccountView",
    "OrderPage",
    "find_orders",
    "order_account",
    "read_account",
    "read_events",
    "read_order",
    "read_quotes",
]

_POSITION_STATUSES = (OrderStatus.OPEN, OrderStatus.CLOSING)


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account and its value at live quotes."""

    account: Account
    value: AccountValue


@dataclass(frozen=True, slots=True)
class OrderPage:
    """A page of orders and the cursor of the next one (None on the last)."""

    orders: list[Order]
    next_cursor: str | None


async def order_account(services: Services, order_id: str) -> str | None:
    """The account an order belongs to (its first lifecycle record, else its snapshot)."""
    record = await services.state.get_lifecycle(order_id)
    # the first request of an order uses the order id as its lifecycle id
    if (
        record is not None
        and isinstance(record.get("account_id"), str)
        and record.get("order_id") == order_id
    ):
        return str(record["account_id"])
    stored = await services.database.get_order(order_id)
    return None if stored is None else stored.account_id


async def read_order(services: Services, order_id: str) -> Order | None:
    """The order as it is now (state store), else as last persisted (database)."""
    account_id = await order_account(services, order_id)
    if account_id is None:
        return None
    live = await services.state.get_order(account_id, order_id)
    if live is not None:
        return order_from_dict(live.data)
    stored = await services.database.get_order(order_id)
    return None if stored is None else order_from_dict(stored.data)


async def read_events(services: Services, order_id: str) -> list[StoredEvent]:
    """The order's events from the database, in insertion order."""
    return await services.database.events_for_order(order_id)


async def find_orders(store: ApiStore, query: OrderQuery) -> OrderPage:
    """One page of order snapshots; the cursor is the last order id of the page."""
    records: list[OrderRecord] = await store.find_orders(query)
    orders = [order_from_dict(r.data) for r in records]
    cursor = records[-1].order_id if len(records) == query.limit else None
    return OrderPage(orders, cursor)


async def read_account(services: Services, account_id: str) -> AccountView | None:
    """Balance, margins, equity and open positions at the latest quotes."""
    found = await services.state.get_account(account_id)
    if found is None:
        stored = await services.database.get_account(account_id)
        if stored is None:
            return None
        account = account_from_dict(stored.data)
    else:
        account = account_from_dict(found.data)
    prices = services.decoded.prices(await services.state.get_prices())
    docs = await services.state.list_orders(account_id)
    open_orders = sorted(
        (order_from_dict(doc.data) for doc in docs.values()),
        key=lambda order: order.order_id,
    )
    values = []
    for order in open_orders:
        if order.status not in _POSITION_STATUSES:
            continue
        raw = await services.state.get_instrument(order.group, order.symbol)
        instrument = None if raw is None else instrument_from_dict(raw)
        values.append(position_value(order, instrument, prices))
    return AccountView(account, account_value(account, tuple(values)))


async def read_quotes(services: Services) -> list[Quote]:
    """Every latest quote, by symbol."""
    stored = await services.state.get_prices()
    return [quote_of(symbol, stored[symbol]) for symbol in sorted(stored)]
