"""What the stuck-order walk costs, measured in one run, printed as a table.

    .venv/bin/python bench/stuck_bench.py [--accounts 500] [--orders 20] [--memory-only]

Fills an in-memory and a Redis state store with ``--accounts`` accounts of ``--orders``
orders each (one QUEUED order per account, the rest CLOSED: a broker's state is mostly
history), then times ``find_stuck`` (wall and CPU) over each, twice with one
``FinalOrders`` as the dispatcher's watch keeps it: the first round reads everything, a
later one (what the watch pays every ``EXECFLOW_STUCK_CHECK_INTERVAL_S``) skips the
final orders. Redis is expected on 127.0.0.1 (the tests' URL); an absent server is
reported, not fatal. Keys are written under a unique prefix and removed at the end: the
server is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from execflow.backends.factory import make_state_store
from execflow.backends.memory_state import InMemoryStateStore
from execflow.backends.state import StateStore, Write
from execflow.domain.codec import account_to_dict, order_to_dict
from execflow.domain.enums import OrderStatus, OrderType, Side
from execflow.domain.models import Account, Order
from execflow.errors import StoreError
from execflow.pipeline.stuck import FinalOrders, find_stuck
from execflow.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/15"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
AFTER_S = 300.0


def _order(account_id: str, number: int, status: OrderStatus) -> Order:
    order_id = f"{account_id}-{number}"
    return Order(
        order_id=order_id,
        account_id=account_id,
        group="standard",
        symbol="EURUSD",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        qty=Decimal("0.10"),
        status=status,
        lifecycle_id=order_id,
        created_at=NOW,
        updated_at=NOW,
    )


async def _fill(state: StateStore, accounts: int, orders: int) -> None:
    for a in range(accounts):
        account_id = f"live:{a}"
        account = Account(account_id, "USD", Decimal(10000), Decimal(100), "standard")
        writes = [Write("account", account_id, 0, account_to_dict(account))]
        for o in range(orders):
            status = OrderStatus.QUEUED if o == 0 else OrderStatus.CLOSED
            order = _order(account_id, o, status)
            writes.append(Write("order", order.order_id, 0, order_to_dict(order)))
        await state.commit(account_id, writes)


async def _measure(name: str, state: StateStore, accounts: int, orders: int) -> None:
    await state.connect()
    try:
        await _fill(state, accounts, orders)
        finals = FinalOrders()
        total = accounts * orders
        for round_name in ("first", "later"):
            wall, cpu = time.perf_counter(), time.process_time()
            now = NOW + timedelta(seconds=2 * AFTER_S)
            found = await find_stuck(state, now, AFTER_S, finals=finals)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(
                f"{name:<8} {round_name:<6} {total:>9,} {len(found):>7,} {wall * 1000:>9.0f} "
                f"{cpu * 1000:>8.0f} {cpu / total * 1e6:>12.1f}"
            )
    finally:
        await state.flush_all()
        await state.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--orders", type=int, default=20, help="orders per account")
    parser.add_argument("--memory-only", action="store_true")
    args = parser.parse_args()
    head = ("store", "round", "orders", "stuck", "wall ms", "CPU ms", "CPU us/order")
    print(
        f"{head[0]:<8} {head[1]:<6} {head[2]:>9} {head[3]:>7} {head[4]:>9} {head[5]:>8} "
        f"{head[6]:>12}"
    )
    await _measure("memory", InMemoryStateStore(), args.accounts, args.orders)
    if args.memory_only:
        return
    prefix = f"stuckbench{uuid.uuid4().hex[:8]}"
    redis = make_state_store(Settings(state_url=f"{REDIS_URL}?key_prefix={prefix}"))
    try:
        await _measure("redis", redis, args.accounts, args.orders)
    except StoreError as exc:
        print(f"redis    not measured: {exc}")


if __name__ == "__main__":
    asyncio.run(main())
