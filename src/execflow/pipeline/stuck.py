"""Stuck orders: the one query (CLI, reconciliation, metric, later the HTTP API) and its watch.

Which orders count as stuck is the pure rule of ``execflow.domain.stuck``. This module
applies it to the **state store**, not to the database's ``orders`` snapshots:

* the state store holds what is live: the reservations an unanswered request blocks,
  and the documents the workers and ``execflow order resolve`` transact on. The database
  lags behind it (DB events in flight to the db writer) and never sees an order whose
  intake commit landed but whose events could not be sent (``INTAKE:UNSENT``): exactly
  an order that would otherwise sit unseen with margin reserved;
* the state store is rebuilt from the database before any consumer runs after a loss
  (``pipeline.rebuild``), so what the database knows is in it too. A listing from a
  store that is empty (``memory://`` in a fresh process) would be empty: the CLI
  rebuilds such a store from the database first (``execflow orders stuck``).

The walk reads every order of every account (as ``execflow reconcile`` does), decodes
only the documents whose stored status and leg states may wait (``may_wait``), and
yields to the event loop after each account. The watch keeps the ids of the final orders
it has seen (``FinalOrders``) and never reads those again, so after its first round a
check costs the orders still alive, not the whole history (``bench/stuck_bench.py``).

``StuckWatch`` runs the query every ``stuck_check_interval_s`` in the dispatcher
process and sets the ``execflow_stuck_orders`` gauge (no order or user labels), with a
``STUCK:FOUND`` WARNING line whenever the count changes to a non-zero value and a
``STUCK:CLEARED`` INFO line when it falls back to zero.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from execflow.backends.state import StateStore
from execflow.clock import Clock
from execflow.domain.codec import CodecError, order_from_dict
from execflow.domain.enums import OrderStatus
from execflow.domain.models import Order
from execflow.domain.stuck import in_flight, is_stuck, may_wait, silent_for_s
from execflow.errors import ExecflowError
from execflow.logs.events import EventLogger
from execflow.pipeline.periodic import Periodic

if TYPE_CHECKING:
    # only annotations: prometheus_client loads where metrics are configured (cli.run)
    from execflow.metrics import Metrics

__all__ = ["FinalOrders", "StuckOrder", "StuckWatch", "find_stuck"]


@dataclass(frozen=True, slots=True)
class StuckOrder:
    """One stuck order and what it waits for."""

    order_id: str
    account_id: str
    symbol: str
    side: str
    status: str
    waiting_for: tuple[str, ...]
    """The unanswered request kinds (``OPEN``, ``CLOSE``, ``PLACE_SL``...)."""
    lifecycle_ids: tuple[str, ...]
    updated_at: datetime
    silent_s: float
    reserved_margin: Decimal

    @classmethod
    def of(cls, order: Order, now: datetime) -> StuckOrder:
        """The view of a stuck ``order`` at ``now``."""
        waiting = in_flight(order)
        return cls(
            order_id=order.order_id,
            account_id=order.account_id,
            symbol=order.symbol,
            side=order.side.value,
            status=order.status.value,
            waiting_for=tuple(r.kind.value for r in waiting),
            lifecycle_ids=tuple(r.lifecycle_id for r in waiting),
            updated_at=order.updated_at,
            silent_s=silent_for_s(order, now),
            reserved_margin=order.reserved_margin,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (decimals as strings, time as ISO 8601 UTC)."""
        return {
            "order_id": self.order_id,
            "account_id": self.account_id,
            "symbol": self.symbol,
            "side": self.side,
            "status": self.status,
            "waiting_for": list(self.waiting_for),
            "lifecycle_ids": list(self.lifecycle_ids),
            "updated_at": self.updated_at.isoformat(),
            "silent_s": round(self.silent_s, 3),
            "reserved_margin": str(self.reserved_margin),
        }


class FinalOrders:
    """Orders seen final and settled, by account: a periodic walk never reads them again.

    A final status never changes again (DESIGN §2), and a final order with no leg
    request out is never stuck, so what a broker's state mostly holds, its history, is
    read once per process. The cost is memory: one id per final order in the store.
    """

    def __init__(self) -> None:
        self._by_account: dict[str, set[str]] = {}

    def of(self, account_id: str) -> set[str]:
        """The final orders seen so far of one account (the set the walk adds to)."""
        return self._by_account.setdefault(account_id, set())

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._by_account.values())


async def find_stuck(
    state: StateStore,
    now: datetime,
    after_s: float,
    log: EventLogger | None = None,
    finals: FinalOrders | None = None,
) -> list[StuckOrder]:
    """Every stuck order of the state store, longest silent first.

    With ``finals`` (kept across calls), orders seen final are not read again. A
    document that does not decode is skipped (and logged when ``log`` is given): it
    cannot be resolved either, and reconciliation reports it.
    """
    found: list[StuckOrder] = []
    for account_id in await state.list_accounts():
        known: set[str] = set() if finals is None else finals.of(account_id)
        for order_id, doc in (await state.list_orders(account_id, skip=known)).items():
            if not _may_wait(doc.data):
                # not worth decoding; and a final one never changes again (a closed
                # position still waiting for a leg's cancel is not final for this walk)
                if doc.data.get("status") in _FINAL_STATUSES:
                    known.add(order_id)
                continue
            try:
                order = order_from_dict(doc.data)
            except CodecError as exc:
                if log is not None:
                    log.warning("STUCK:UNREADABLE", order_id=order_id, user=account_id, error=exc)
                continue
            if is_stuck(order, now, after_s):
                found.append(StuckOrder.of(order, now))
        # the walk runs inside a busy process (the dispatcher): let it breathe per account
        await asyncio.sleep(0)
    found.sort(key=lambda s: (-s.silent_s, s.order_id))
    return found


_FINAL_STATUSES = frozenset(status.value for status in OrderStatus if status.is_final)


def _may_wait(data: dict[str, Any]) -> bool:
    """``domain.stuck.may_wait`` on a stored order document (the codec's layout)."""
    status = data.get("status")
    if not isinstance(status, str):
        return True  # let the decoder say what is wrong with it
    return may_wait(status, _leg_state(data.get("sl")), _leg_state(data.get("tp")))


def _leg_state(leg: object) -> str | None:
    state = leg.get("state") if isinstance(leg, dict) else None
    return state if isinstance(state, str) else None


class StuckWatch:
    """Counts stuck orders on a timer for the ``execflow_stuck_orders`` gauge."""

    def __init__(
        self,
        state: StateStore,
        log: EventLogger,
        clock: Clock,
        *,
        after_s: float,
        interval_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._state = state
        self._log = log
        self._clock = clock
        self._after_s = after_s
        self._metrics = metrics
        self._last: int | None = None
        self._finals = FinalOrders()
        self._timer = Periodic("stuck-watch", self.check, interval_s, on_error=self._failed)

    async def check(self) -> int:
        """Count the stuck orders now; set the gauge; log a change."""
        stuck = await find_stuck(
            self._state, self._clock.now(), self._after_s, self._log, self._finals
        )
        count = len(stuck)
        if self._metrics is not None:
            self._metrics.set_stuck_orders(count)
        if count != self._last:
            if count:
                oldest = stuck[0]
                self._log.warning(
                    "STUCK:FOUND",
                    stuck_orders=count,
                    stuck_after_s=self._after_s,
                    oldest_order_id=oldest.order_id,
                    oldest_silent_s=round(oldest.silent_s, 3),
                    oldest_waiting_for=",".join(oldest.waiting_for),
                    hint="execflow orders stuck; execflow order resolve ORDER_ID --as ...",
                )
            elif self._last:
                self._log.info("STUCK:CLEARED", stuck_after_s=self._after_s)
        self._last = count
        return count

    def start(self) -> None:
        """Check now and every ``interval_s`` until ``stop``."""
        self._timer.start()

    async def stop(self) -> None:
        """Stop checking."""
        await self._timer.stop()

    def _failed(self, exc: ExecflowError) -> None:
        # the state store away: the runner's outage handling covers the pipeline; the
        # count is simply not refreshed this round
        self._log.warning("STUCK:CHECK_FAILED", error=exc)
