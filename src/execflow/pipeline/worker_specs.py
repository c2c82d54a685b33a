"""The seven workers as data: tag, and what each reports about an applied transition.

A ``describe`` function is pure: from the order before, the ``Applied`` outcome and the
request kind it returns the fields of the ``<TAG>:SUCCESS`` line, the worker's own
counters (DESIGN §7) and its worker-specific event lines. The generic handler in
``workers`` does the rest, identically for all seven.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from execflow.domain import money
from execflow.domain.effects import CalculationName, LpRequest
from execflow.domain.enums import LegKind, LegState, OrderStatus, RequestKind
from execflow.domain.models import Account, Order
from execflow.domain.outcomes import Applied
from execflow.domain.routing import Worker

__all__ = [
    "WORKER_SPECS",
    "Change",
    "Describe",
    "Summary",
    "WorkerEvent",
    "WorkerSpec",
    "base_fields",
]


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """A worker-specific line: ``<TAG>:<suffix>`` with ``fields`` (INFO)."""

    suffix: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Summary:
    """What the handler logs and counts for one applied transition."""

    fields: Mapping[str, Any]
    counters: tuple[str, ...] = ()
    events: tuple[WorkerEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class Change:
    """An applied transition with what it started from."""

    before: Order
    account_before: Account
    applied: Applied
    kind: RequestKind

    @property
    def order(self) -> Order:
        """The order after the transition."""
        return self.applied.order

    @property
    def account_changed(self) -> bool:
        """True when the transition touched the account."""
        return self.applied.account_changed(self.account_before)


Describe = Callable[[Change], Summary]


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """One worker: which transition, which tag, how to describe its results."""

    worker: Worker
    tag: str
    describe: Describe
    counters: tuple[str, ...] = field(default=())

    @property
    def component(self) -> str:
        """Log component and file stem: ``worker_open``."""
        return f"worker_{self.worker.value}"


def base_fields(order: Order, kind: RequestKind) -> dict[str, Any]:
    """Fields every worker line about an order carries."""
    return {
        "order_id": order.order_id,
        "user": order.account_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "status": order.status.value,
        "kind": kind.value,
    }


def _requests(applied: Applied) -> list[LpRequest]:
    return [e for e in applied.effects if isinstance(e, LpRequest)]


def _calculated(applied: Applied, name: CalculationName) -> bool:
    return any(c.name is name for c in applied.calculations)


def _describe_open(change: Change) -> Summary:
    applied, order = change.applied, change.order
    fields: dict[str, Any] = {"qty": order.qty, "cum_qty": order.cum_qty, "avg_px": order.avg_px}
    counters: list[str] = []
    events: list[WorkerEvent] = []
    if order.status is OrderStatus.OPEN:
        counters += ["orders_opened", "margin_calculations"]
        if order.commission is not None and money.charges_entry(order.commission.commission_type):
            counters.append("commission_calculations")
        fields.update(
            open_price=order.open_price,
            margin=order.margin,
            entry_commission=order.entry_commission,
            used_margin_executed=applied.account.used_margin_executed,
            free_margin=applied.account.free_margin,
        )
    else:
        events.append(
            WorkerEvent("PARTIAL_FILL", {"order_id": order.order_id, "cum_qty": order.cum_qty})
        )
    for effect in _requests(applied):
        request = effect.request
        leg = request.kind.leg
        events.append(
            WorkerEvent(
                "SLTP_REQUESTED",
                {
                    "order_id": order.order_id,
                    "leg": leg.value if leg else None,
                    "lifecycle_id": request.lifecycle_id,
                    "price": order.leg(leg).price if leg else None,
                    "lp_price": request.stop_px if request.stop_px is not None else request.price,
                },
            )
        )
    return Summary(fields, tuple(counters), tuple(events))


def _describe_close(change: Change) -> Summary:
    applied, order = change.applied, change.order
    fields: dict[str, Any] = {
        "close_cum_qty": order.close_cum_qty,
        "close_price": order.close_price,
        "profit": order.profit,
        "exit_commission": order.exit_commission,
        "entry_commission": order.entry_commission,
        "net_profit": order.net_profit,
        "close_reason": order.close_reason.value if order.close_reason else None,
        "balance": applied.account.balance,
        "used_margin_executed": applied.account.used_margin_executed,
    }
    counters: list[str] = []
    events: list[WorkerEvent] = []
    if order.status is OrderStatus.CLOSED:
        counters.append("orders_closed")
    else:
        events.append(
            WorkerEvent(
                "PARTIAL_CLOSE", {"order_id": order.order_id, "close_cum_qty": order.close_cum_qty}
            )
        )
    if _calculated(applied, CalculationName.ORDER_CLOSE_CALC):
        counters.append("close_calculations")
    for effect in _requests(applied):
        request = effect.request
        if request.kind in (RequestKind.CANCEL_SL, RequestKind.CANCEL_TP):
            counters.append("counterpart_cancels")
            events.append(
                WorkerEvent(
                    "COUNTERPART_CANCEL_SENT",
                    {
                        "order_id": order.order_id,
                        "cancel_kind": request.kind.value,
                        "lifecycle_id": request.lifecycle_id,
                        "orig_lifecycle_id": request.orig_lifecycle_id,
                    },
                )
            )
    return Summary(fields, tuple(counters), tuple(events))


def _describe_pending(change: Change) -> Summary:
    before, order = change.before, change.order
    fields: dict[str, Any] = {
        "order_type": order.order_type.value,
        "requested_price": order.requested_price,
        "qty": order.qty,
        "reserved_margin": order.reserved_margin,
    }
    if before.status is OrderStatus.PENDING_QUEUED:
        return Summary(fields, ("orders_pending",))
    event = WorkerEvent(
        "PLACEMENT_UPDATED",
        {
            "order_id": order.order_id,
            "old_price": before.requested_price,
            "new_price": order.requested_price,
        },
    )
    return Summary(fields, ("orders_modified",), (event,))


def _describe_cancel(change: Change) -> Summary:
    before, applied, kind, order = change.before, change.applied, change.kind, change.order
    leg = kind.leg
    if leg is None:
        fields: dict[str, Any] = {
            "cancelled": "ORDER",
            "reserved_margin_released": before.reserved_margin,
            "used_margin_all": applied.account.used_margin_all,
        }
        return Summary(fields, ("pending_cancels",))
    fields = {"cancelled": leg.value, "leg_lifecycle_id": before.leg(leg).lifecycle_id}
    counter = "sl_cancels" if leg is LegKind.SL else "tp_cancels"
    event = WorkerEvent(
        "LEG_CANCELLED",
        {"order_id": order.order_id, "leg": leg.value, "price": before.leg(leg).price},
    )
    return Summary(fields, (counter,), (event,))


_REJECTION_TYPES: Mapping[RequestKind, str] = MappingProxyType(
    {
        RequestKind.OPEN: "ORDER_PLACEMENT",
        RequestKind.PLACE_PENDING: "PENDING_PLACEMENT",
        RequestKind.MODIFY_PENDING: "MODIFY",
        RequestKind.CANCEL_PENDING: "CANCEL",
        RequestKind.CLOSE: "CLOSE",
        RequestKind.PLACE_SL: "SL_PLACEMENT",
        RequestKind.PLACE_TP: "TP_PLACEMENT",
        RequestKind.CANCEL_SL: "SL_CANCEL",
        RequestKind.CANCEL_TP: "TP_CANCEL",
    }
)
_PLACEMENTS = frozenset({RequestKind.OPEN, RequestKind.PLACE_PENDING})


def _describe_reject(change: Change) -> Summary:
    before, applied, kind, order = change.before, change.applied, change.kind, change.order
    fields: dict[str, Any] = {
        "rejection_type": _REJECTION_TYPES[kind],
        "reason": order.reason if kind.leg is None else order.leg(kind.leg).reason,
    }
    counters = ["placement_rejects" if kind in _PLACEMENTS else "non_placement_rejects"]
    if change.account_changed:
        counters.append("margin_updates")
        fields["reserved_margin_released"] = before.reserved_margin
        fields["used_margin_all"] = applied.account.used_margin_all
    return Summary(fields, tuple(counters))


def _describe_leg(leg: LegKind) -> Describe:
    def describe(change: Change) -> Summary:
        before, applied = change.before, change.applied
        old, new = before.leg(leg), applied.order.leg(leg)
        fields: dict[str, Any] = {
            "leg": leg.value,
            "leg_state": new.state.value,
            "leg_price": new.price,
            "leg_lifecycle_id": new.lifecycle_id,
        }
        if old.state is LegState.REQUESTED:
            event = WorkerEvent(
                "LEG_ACTIVATED",
                {"order_id": before.order_id, "leg": leg.value, "price": new.price},
            )
            return Summary(fields, ("legs_activated",), (event,))
        event = WorkerEvent(
            "PLACEMENT_UPDATED",
            {
                "order_id": before.order_id,
                "leg": leg.value,
                "old_price": old.price,
                "new_price": new.price,
            },
        )
        return Summary(fields, ("legs_modified",), (event,))

    return describe


WORKER_SPECS: Mapping[Worker, WorkerSpec] = MappingProxyType(
    {
        Worker.OPEN: WorkerSpec(
            Worker.OPEN,
            "OPEN",
            _describe_open,
            ("orders_opened", "margin_calculations", "commission_calculations"),
        ),
        Worker.CLOSE: WorkerSpec(
            Worker.CLOSE,
            "CLOSE",
            _describe_close,
            ("orders_closed", "close_calculations", "counterpart_cancels"),
        ),
        Worker.PENDING: WorkerSpec(
            Worker.PENDING, "PENDING", _describe_pending, ("orders_pending", "orders_modified")
        ),
        Worker.CANCEL: WorkerSpec(
            Worker.CANCEL,
            "CANCEL",
            _describe_cancel,
            ("sl_cancels", "tp_cancels", "pending_cancels"),
        ),
        Worker.REJECT: WorkerSpec(
            Worker.REJECT,
            "REJECT",
            _describe_reject,
            ("placement_rejects", "non_placement_rejects", "margin_updates"),
        ),
        Worker.STOPLOSS: WorkerSpec(
            Worker.STOPLOSS,
            "STOPLOSS",
            _describe_leg(LegKind.SL),
            ("legs_activated", "legs_modified"),
        ),
        Worker.TAKEPROFIT: WorkerSpec(
            Worker.TAKEPROFIT,
            "TAKEPROFIT",
            _describe_leg(LegKind.TP),
            ("legs_activated", "legs_modified"),
        ),
    }
)
"""Worker -> its spec; ``counters`` lists the worker's own counters (DESIGN §7)."""
