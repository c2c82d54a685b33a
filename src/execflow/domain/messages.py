"""What crosses the LP boundary: provider requests out, execution reports in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from execflow.domain.enums import LpOrderType, ReportStatus, RequestKind, Side

__all__ = ["EXECUTION_REPORT", "ExecutionReport", "NonExecutionMessage", "ProviderRequest"]

EXECUTION_REPORT = "8"
"""FIX MsgType of an execution report; the only type that is routed."""


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """One request to the LP; ``lifecycle_id`` becomes the FIX ClOrdID.

    Prices here are LP levels (the half spread already taken off or added), not the
    client's levels. ``group`` is the account's group: with the symbol it chooses the LP
    (``settings.lp_routing``), so every request of one order goes to the same LP.
    """

    lifecycle_id: str
    kind: RequestKind
    account_id: str
    order_id: str
    symbol: str
    side: Side
    order_type: LpOrderType
    qty: Decimal
    orig_lifecycle_id: str | None = None
    price: Decimal | None = None
    stop_px: Decimal | None = None
    group: str = ""


_NOT_TRADES = frozenset(
    {
        # FIX 4.4 ExecType (150) values that carry no new fill: new, done for day,
        # cancelled, replaced, pending cancel, stopped, rejected, suspended, pending new,
        # calculated, expired, restated, pending replace, trade cancel, order status
        *("0", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C", "D", "E", "H", "I"),
        *("ORDER_STATUS", "RESTATED", "TRADE_CANCEL"),
    }
)


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """The normalised execution report (DESIGN §2), whatever the wire format was.

    ``lifecycle_id`` may be None: such a report is valid but cannot be routed
    (DLQ ``missing_lifecycle_id``). Fill reports always carry a quantity and a price.
    """

    exec_id: str
    ord_status: ReportStatus
    lifecycle_id: str | None = None
    orig_lifecycle_id: str | None = None
    lp_order_id: str | None = None
    exec_type: str | None = None
    avg_px: Decimal | None = None
    cum_qty: Decimal | None = None
    last_px: Decimal | None = None
    last_qty: Decimal | None = None
    leaves_qty: Decimal | None = None
    price: Decimal | None = None
    stop_px: Decimal | None = None
    side: Side | None = None
    symbol: str | None = None
    reason: str | None = None
    transact_time: datetime | None = None
    provider: str = ""
    msg_type: str = EXECUTION_REPORT

    @property
    def is_trade(self) -> bool:
        """False when ExecType (150) says this report restates the order, not fills it.

        An order-status (I) or restated (D) report repeats LastQty of an earlier fill
        under a new ExecID; added again, a LastQty-only fill would count twice.
        """
        return self.exec_type is None or self.exec_type.upper() not in _NOT_TRADES

    @property
    def level(self) -> Decimal | None:
        """The resting level the LP reports for a pending order or a leg."""
        return self.stop_px if self.stop_px is not None else self.price


@dataclass(frozen=True, slots=True)
class NonExecutionMessage:
    """A valid message that is not an execution report (heartbeat, ack, logon...)."""

    msg_type: str
    provider: str = ""
