"""A random run of reserves, opens and closes on one account, with every DB event payload."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from execflow.domain.accounting import add_position, close_position, reserve
from execflow.domain.enums import OrderStatus, Side
from execflow.domain.models import Account, Position
from execflow.domain.transitions._common import event_payload
from tests.domain.factories import account, market_order

D = Decimal


@dataclass(frozen=True, slots=True)
class History:
    """Where the run started, each account after a step, and each step's payload."""

    start: Account
    accounts: tuple[Account, ...]
    payloads: tuple[dict[str, Any], ...]
    order_ids: tuple[str, ...]

    @property
    def final(self) -> Account:
        return self.accounts[-1] if self.accounts else self.start


def account_history(steps: int, seed: int, start: Account | None = None) -> History:
    """``steps`` transitions drawn from ``seed``: reserve, open (fill) or close."""
    rng = random.Random(seed)
    acc = start or account()
    first = acc
    accounts: list[Account] = []
    payloads: list[dict[str, Any]] = []
    order_ids: list[str] = []
    open_ids = [p.order_id for p in acc.positions]
    versions: dict[str, int] = {}
    for n in range(steps):
        order_id, status = f"o{seed}-{n:03d}", OrderStatus.OPEN
        before = acc
        if open_ids and rng.random() < 0.4:
            order_id, status = open_ids.pop(rng.randrange(len(open_ids))), OrderStatus.CLOSED
            acc = close_position(acc, order_id, D(rng.randint(-500, 500)) / 100)
        elif rng.random() < 0.5:
            status = OrderStatus.QUEUED
            acc = reserve(acc, order_id, D(rng.randint(1, 900)))
        else:
            lots = D(rng.randint(1, 20)) / 10
            acc = add_position(acc, Position(order_id, "EURUSD", Side.BUY, lots, D("1085")))
            open_ids.append(order_id)
        versions[order_id] = versions.get(order_id, 0) + 1
        order = market_order(order_id=order_id, status=status, version=versions[order_id])
        acc = replace(acc, version=before.version + 1)
        accounts.append(acc)
        payloads.append(event_payload(order, before, acc, None))
        order_ids.append(order.order_id)
    return History(first, tuple(accounts), tuple(payloads), tuple(order_ids))
