"""The dispatcher's routing table as data (DESIGN §3) and the decision function."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from execflow.domain.enums import ReportStatus, RequestKind
from execflow.domain.messages import ExecutionReport, NonExecutionMessage
from execflow.domain.models import LifecycleRecord
from execflow.errors import ReportError

__all__ = [
    "ROUTING_TABLE",
    "DeadLetterDecision",
    "Decision",
    "DlqReason",
    "Ignore",
    "Route",
    "Worker",
    "decide",
    "route",
]


class Worker(StrEnum):
    """The seven workers; the value is the worker's name (queue and log file stem)."""

    OPEN = "open"
    CLOSE = "close"
    PENDING = "pending"
    CANCEL = "cancel"
    REJECT = "reject"
    STOPLOSS = "stoploss"
    TAKEPROFIT = "takeprofit"


class DlqReason(StrEnum):
    """Every reason a message may be dead-lettered for, dispatcher and workers alike."""

    MALFORMED_REPORT = "malformed_report"
    MISSING_LIFECYCLE_ID = "missing_lifecycle_id"
    UNKNOWN_LIFECYCLE_ID = "unknown_lifecycle_id"
    UNMAPPED_ROUTE = "unmapped_route"
    PRECONDITION_TIMEOUT = "precondition_timeout"
    MISSING_CONVERSION_RATE = "missing_conversion_rate"
    NEEDS_REVIEW = "needs_review"
    INVALID_TRANSITION = "invalid_transition"
    MAX_ATTEMPTS = "max_attempts"
    REPORT_MISMATCH = "report_mismatch"
    OVERFILL = "overfill"
    PRICE_OUT_OF_BAND = "price_out_of_band"
    OVERSIZE = "oversize"


@dataclass(frozen=True, slots=True)
class Route:
    """Send the report to this worker's queue."""

    worker: Worker


@dataclass(frozen=True, slots=True)
class Ignore:
    """Acknowledge and count, do nothing else (LP acks, heartbeats)."""

    reason: str


@dataclass(frozen=True, slots=True)
class DeadLetterDecision:
    """Send to the DLQ with this reason."""

    reason: DlqReason
    detail: str = ""


Decision = Route | Ignore | DeadLetterDecision

_ACK = Ignore("ack")
_DLQ = DeadLetterDecision(DlqReason.UNMAPPED_ROUTE)
_S = ReportStatus
_W = Worker


def _row(
    pending: Decision, modify: Decision, fill: Decision, cancelled: Decision
) -> dict[ReportStatus, Decision]:
    return {
        _S.PENDING: pending,
        _S.MODIFY: modify,
        _S.EXECUTED: fill,
        _S.PARTIALLY_FILLED: fill,
        _S.CANCELLED: cancelled,
        _S.REJECTED: Route(_W.REJECT),
    }


_ROWS: dict[RequestKind, dict[ReportStatus, Decision]] = {
    RequestKind.OPEN: _row(_ACK, _DLQ, Route(_W.OPEN), Route(_W.REJECT)),
    RequestKind.PLACE_PENDING: _row(
        Route(_W.PENDING), Route(_W.PENDING), Route(_W.OPEN), Route(_W.CANCEL)
    ),
    RequestKind.MODIFY_PENDING: _row(
        Route(_W.PENDING), Route(_W.PENDING), Route(_W.OPEN), Route(_W.CANCEL)
    ),
    RequestKind.CANCEL_PENDING: _row(_ACK, _DLQ, Route(_W.OPEN), Route(_W.CANCEL)),
    RequestKind.CLOSE: _row(_ACK, _DLQ, Route(_W.CLOSE), Route(_W.REJECT)),
    RequestKind.PLACE_SL: _row(
        Route(_W.STOPLOSS), Route(_W.STOPLOSS), Route(_W.CLOSE), Route(_W.CANCEL)
    ),
    RequestKind.PLACE_TP: _row(
        Route(_W.TAKEPROFIT), Route(_W.TAKEPROFIT), Route(_W.CLOSE), Route(_W.CANCEL)
    ),
    RequestKind.CANCEL_SL: _row(_ACK, _DLQ, Route(_W.CLOSE), Route(_W.CANCEL)),
    RequestKind.CANCEL_TP: _row(_ACK, _DLQ, Route(_W.CLOSE), Route(_W.CANCEL)),
}

ROUTING_TABLE: Mapping[tuple[RequestKind, ReportStatus], Decision] = {
    (kind, status): decision for kind, row in _ROWS.items() for status, decision in row.items()
}
"""(request kind, report status) -> decision; covers the whole product of both enums."""


def route(kind: RequestKind, status: ReportStatus) -> Decision:
    """Look up one cell of the routing table."""
    return ROUTING_TABLE.get((kind, status), _DLQ)


def decide(
    message: ExecutionReport | NonExecutionMessage | ReportError,
    lifecycle: LifecycleRecord | None,
) -> Decision:
    """The dispatcher's whole decision for one normalised message (or its parse error).

    ``lifecycle`` is the record looked up for ``message.lifecycle_id`` (None when the
    id is absent or unknown).
    """
    if isinstance(message, ReportError):
        return DeadLetterDecision(DlqReason.MALFORMED_REPORT, f"{message.field}: {message.reason}")
    if isinstance(message, NonExecutionMessage):
        return Ignore(message.msg_type)
    if message.lifecycle_id is None:
        return DeadLetterDecision(DlqReason.MISSING_LIFECYCLE_ID)
    if lifecycle is None or lifecycle.lifecycle_id != message.lifecycle_id:
        return DeadLetterDecision(DlqReason.UNKNOWN_LIFECYCLE_ID, message.lifecycle_id)
    return route(lifecycle.kind, message.ord_status)
