"""Every cell of the routing table, checked against DESIGN §3 written out independently."""

from __future__ import annotations

import itertools

import pytest

from execflow.domain.enums import ReportStatus, RequestKind
from execflow.domain.messages import ExecutionReport, NonExecutionMessage
from execflow.domain.models import LifecycleRecord
from execflow.domain.routing import (
    ROUTING_TABLE,
    DeadLetterDecision,
    Decision,
    DlqReason,
    Ignore,
    Route,
    Worker,
    decide,
    route,
)
from execflow.errors import ReportError

# columns: PENDING, MODIFY, EXECUTED, PARTIALLY_FILLED, CANCELLED, REJECTED
_DESIGN = """
OPEN            ack      dlq      open     open     reject   reject
PLACE_PENDING   pending  pending  open     open     cancel   reject
MODIFY_PENDING  pending  pending  open     open     cancel   reject
CANCEL_PENDING  ack      dlq      open     open     cancel   reject
CLOSE           ack      dlq      close    close    reject   reject
PLACE_SL        stoploss stoploss close    close    cancel   reject
PLACE_TP        takeprofit takeprofit close close   cancel   reject
CANCEL_SL       ack      dlq      close    close    cancel   reject
CANCEL_TP       ack      dlq      close    close    cancel   reject
"""
_COLUMNS = [
    ReportStatus.PENDING,
    ReportStatus.MODIFY,
    ReportStatus.EXECUTED,
    ReportStatus.PARTIALLY_FILLED,
    ReportStatus.CANCELLED,
    ReportStatus.REJECTED,
]


def _expected() -> dict[tuple[RequestKind, ReportStatus], Decision]:
    out: dict[tuple[RequestKind, ReportStatus], Decision] = {}
    for line in _DESIGN.strip().splitlines():
        kind, *cells = line.split()
        for status, cell in zip(_COLUMNS, cells, strict=True):
            decision: Decision
            if cell == "ack":
                decision = Ignore("ack")
            elif cell == "dlq":
                decision = DeadLetterDecision(DlqReason.UNMAPPED_ROUTE)
            else:
                decision = Route(Worker(cell))
            out[(RequestKind(kind), status)] = decision
    return out


EXPECTED = _expected()


@pytest.mark.parametrize(
    ("kind", "status"), list(itertools.product(RequestKind, ReportStatus)), ids=str
)
def test_every_cell_matches_the_design(kind: RequestKind, status: ReportStatus) -> None:
    assert route(kind, status) == EXPECTED[(kind, status)]
    report = ExecutionReport(
        exec_id="x", ord_status=status, lifecycle_id="L1", cum_qty=None, avg_px=None
    )
    assert decide(report, LifecycleRecord("L1", "live:6", "o1", kind)) == EXPECTED[(kind, status)]


def test_table_covers_the_whole_product() -> None:
    assert set(ROUTING_TABLE) == set(itertools.product(RequestKind, ReportStatus))


def test_malformed_report_is_dead_lettered_with_its_field() -> None:
    decision = decide(ReportError("cum_qty", "negative value"), None)
    assert decision == DeadLetterDecision(DlqReason.MALFORMED_REPORT, "cum_qty: negative value")


def test_non_execution_messages_are_ignored() -> None:
    assert decide(NonExecutionMessage("heartbeat"), None) == Ignore("heartbeat")


def test_missing_lifecycle_id() -> None:
    report = ExecutionReport(exec_id="x", ord_status=ReportStatus.PENDING)
    assert decide(report, None) == DeadLetterDecision(DlqReason.MISSING_LIFECYCLE_ID)


def test_unknown_lifecycle_id() -> None:
    report = ExecutionReport(exec_id="x", ord_status=ReportStatus.PENDING, lifecycle_id="L9")
    assert decide(report, None) == DeadLetterDecision(DlqReason.UNKNOWN_LIFECYCLE_ID, "L9")
    wrong = LifecycleRecord("L8", "live:6", "o1", RequestKind.OPEN)
    assert decide(report, wrong) == DeadLetterDecision(DlqReason.UNKNOWN_LIFECYCLE_ID, "L9")
