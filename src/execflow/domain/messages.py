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
    client's levels.
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
    def level(self) -> Decimal | None:
        """The resting level the LP reports for a pending order or a leg."""
        return self.stop_px if self.stop_px is not None else self.price


@dataclass(frozen=True, slots=True)
class NonExecutionMessage:
    """A valid message that is not an execution report (heartbeat, ack, logon...)."""

    msg_type: str
    provider: str = ""
