"""Every non-DLQ cell of the routing table as an end-to-end scenario, and its checks.

Shared by the embedded run (``test_e2e_routing.py``) and the RabbitMQ + Redis +
PostgreSQL run (``test_e2e_integration.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from execflow.domain.enums import LegState, OrderStatus, ReportStatus, RequestKind
from execflow.domain.routing import ROUTING_TABLE, DeadLetterDecision, Ignore, Route
from tests.pipeline.conftest import LogReader
from tests.pipeline.flow import ASK, BID, PARTIAL, QTY, Flow, Setup

K = RequestKind
S = ReportStatus
O = OrderStatus  # noqa: E741
L = LegState
OPENING = (K.OPEN, K.PLACE_PENDING, K.MODIFY_PENDING, K.CANCEL_PENDING)
START_BALANCE = Decimal("10000.00")


@dataclass(frozen=True)
class Expect:
    """Final order status, leg states and the one DB event the report must add."""

    status: OrderStatus
    event: str | None
    sl: LegState = L.NONE
    tp: LegState = L.NONE


def _legs(kind: RequestKind, state: LegState) -> dict[str, LegState]:
    leg = kind.leg
    if leg is None:
        return {}
    return {"sl": state} if leg.value == "SL" else {"tp": state}


def _expectations() -> dict[tuple[RequestKind, ReportStatus], Expect]:
    table: dict[tuple[RequestKind, ReportStatus], Expect] = {
        (K.OPEN, S.PENDING): Expect(O.QUEUED, None),
        (K.OPEN, S.EXECUTED): Expect(O.OPEN, "ORDER_OPENED"),
        (K.OPEN, S.PARTIALLY_FILLED): Expect(O.QUEUED, "ORDER_PARTIALLY_FILLED"),
        (K.OPEN, S.CANCELLED): Expect(O.REJECTED, "ORDER_REJECTED"),
        (K.OPEN, S.REJECTED): Expect(O.REJECTED, "ORDER_REJECTED"),
        (K.PLACE_PENDING, S.PENDING): Expect(O.PENDING, "PENDING_ACCEPTED"),
        (K.PLACE_PENDING, S.MODIFY): Expect(O.PENDING, "PENDING_ACCEPTED"),
        (K.PLACE_PENDING, S.EXECUTED): Expect(O.OPEN, "ORDER_OPENED"),
        (K.PLACE_PENDING, S.PARTIALLY_FILLED): Expect(O.PENDING_QUEUED, "ORDER_PARTIALLY_FILLED"),
        (K.PLACE_PENDING, S.CANCELLED): Expect(O.CANCELLED, "PENDING_CANCELLED"),
        (K.PLACE_PENDING, S.REJECTED): Expect(O.REJECTED, "ORDER_REJECTED"),
        (K.MODIFY_PENDING, S.PENDING): Expect(O.PENDING, "PENDING_MODIFIED"),
        (K.MODIFY_PENDING, S.MODIFY): Expect(O.PENDING, "PENDING_MODIFIED"),
        (K.MODIFY_PENDING, S.EXECUTED): Expect(O.OPEN, "ORDER_OPENED"),
        (K.MODIFY_PENDING, S.PARTIALLY_FILLED): Expect(O.MODIFYING, "ORDER_PARTIALLY_FILLED"),
        (K.MODIFY_PENDING, S.CANCELLED): Expect(O.CANCELLED, "PENDING_CANCELLED"),
        (K.MODIFY_PENDING, S.REJECTED): Expect(O.PENDING, "REQUEST_REJECTED"),
        (K.CANCEL_PENDING, S.PENDING): Expect(O.CANCELLING, None),
        (K.CANCEL_PENDING, S.EXECUTED): Expect(O.OPEN, "ORDER_OPENED"),
        (K.CANCEL_PENDING, S.PARTIALLY_FILLED): Expect(O.CANCELLING, "ORDER_PARTIALLY_FILLED"),
        (K.CANCEL_PENDING, S.CANCELLED): Expect(O.CANCELLED, "PENDING_CANCELLED"),
        (K.CANCEL_PENDING, S.REJECTED): Expect(O.PENDING, "REQUEST_REJECTED"),
        (K.CLOSE, S.PENDING): Expect(O.CLOSING, None),
        (K.CLOSE, S.EXECUTED): Expect(O.CLOSED, "ORDER_CLOSED"),
        (K.CLOSE, S.PARTIALLY_FILLED): Expect(O.CLOSING, "ORDER_PARTIALLY_CLOSED"),
        (K.CLOSE, S.CANCELLED): Expect(O.OPEN, "REQUEST_REJECTED"),
        (K.CLOSE, S.REJECTED): Expect(O.OPEN, "REQUEST_REJECTED"),
    }
    for place, cancel in ((K.PLACE_SL, K.CANCEL_SL), (K.PLACE_TP, K.CANCEL_TP)):
        rows = {
            (place, S.PENDING): (O.OPEN, "LEG_ACTIVE", L.ACTIVE),
            (place, S.MODIFY): (O.OPEN, "LEG_ACTIVE", L.ACTIVE),
            (place, S.EXECUTED): (O.CLOSED, "ORDER_CLOSED", L.TRIGGERED),
            (place, S.PARTIALLY_FILLED): (O.OPEN, "ORDER_PARTIALLY_CLOSED", L.REQUESTED),
            (place, S.CANCELLED): (O.OPEN, "LEG_CANCELLED", L.CANCELLED),
            (place, S.REJECTED): (O.OPEN, "LEG_REJECTED", L.REJECTED),
            (cancel, S.PENDING): (O.OPEN, None, L.CANCEL_REQUESTED),
            (cancel, S.EXECUTED): (O.CLOSED, "ORDER_CLOSED", L.TRIGGERED),
            (cancel, S.PARTIALLY_FILLED): (O.OPEN, "ORDER_PARTIALLY_CLOSED", L.CANCEL_REQUESTED),
            (cancel, S.CANCELLED): (O.OPEN, "LEG_CANCELLED", L.CANCELLED),
            (cancel, S.REJECTED): (O.OPEN, "REQUEST_REJECTED", L.ACTIVE),
        }
        for key, (status, event, leg) in rows.items():
            table[key] = Expect(status, event, **_legs(key[0], leg))
    return table


EXPECTED = _expectations()
CELLS = sorted(
    (
        cell
        for cell, decision in ROUTING_TABLE.items()
        if not isinstance(decision, DeadLetterDecision)
    ),
    key=lambda c: (list(K).index(c[0]), list(S).index(c[1])),
)
CELL_IDS = [f"{kind.value}-{status.value}" for kind, status in CELLS]


async def answer(flow: Flow, setup: Setup, status: ReportStatus) -> str:
    """The LP's report of ``status`` to the outstanding request; returns its exec_id."""
    if status.is_fill:
        qty = QTY if status is S.EXECUTED else PARTIAL
        px = ASK if setup.kind in OPENING else BID
        return await flow.report(setup.lifecycle_id, status.value, qty=qty, px=px)
    if status in (S.PENDING, S.MODIFY):
        level = setup.request.get("stop_px") or setup.request.get("price")
        return await flow.report(setup.lifecycle_id, status.value, level=level)
    return await flow.report(setup.lifecycle_id, status.value, reason="no liquidity")


async def check_state_and_db(
    flow: Flow, setup: Setup, kind: RequestKind, status: ReportStatus, events_before: list[str]
) -> None:
    """Order, legs, account bookkeeping, and the DB rows match the expectation."""
    expect = EXPECTED[(kind, status)]
    order = await flow.order(setup.order_id)
    assert (order.status, order.sl.state, order.tp.state) == (expect.status, expect.sl, expect.tp)
    account = await flow.account()
    assert account.used_margin_all == account.used_margin_executed + account.reserved_total
    assert account.free_margin == account.balance - account.used_margin_all
    if order.status in (O.REJECTED, O.CANCELLED):
        assert account.reservations == () and account.used_margin_all == 0
        assert account.balance == START_BALANCE
    if order.status is O.CLOSED:
        assert order.net_profit is not None and account.positions == ()
        assert account.balance == START_BALANCE + order.net_profit
        assert account.used_margin_all == 0
    if order.status is O.OPEN:
        assert [p.order_id for p in account.positions] == [order.order_id]
    # the database: the new event, and snapshots equal to the state
    kinds = await flow.event_kinds(setup.order_id)
    assert kinds[: len(events_before)] == events_before
    assert kinds[len(events_before) :] == ([expect.event] if expect.event else [])
    stored = await flow.services.database.get_order(setup.order_id)
    assert stored is not None
    assert (stored.status, stored.version) == (order.status.value, order.version)
    stored_account = await flow.services.database.get_account(account.account_id)
    assert stored_account is not None
    assert stored_account.version == account.version
    assert Decimal(stored_account.data["balance"]) == account.balance


def check_logs(
    logs: LogReader, setup: Setup, kind: RequestKind, status: ReportStatus, exec_id: str
) -> None:
    """The report's path through the files: dispatcher, worker, db writer, intake."""
    decision = ROUTING_TABLE[(kind, status)]
    order_id = setup.order_id
    assert [r for r in logs.find("intake", "INTAKE:SENT") if r.get("order_id") == order_id]
    dispatched = [
        r
        for r in logs.records("dispatcher")
        if r.get("exec_id") == exec_id and r.tag.startswith("DISPATCH:")
    ]
    if isinstance(decision, Ignore):
        assert [r.tag for r in dispatched] == ["DISPATCH:IGNORED"]
        ignored = dispatched[0]
        assert ignored.level == "DEBUG" and ignored.get("order_id") == order_id
        assert ignored.get("reason") == "ack"
        return
    assert isinstance(decision, Route)
    routed = [r for r in dispatched if r.tag == "DISPATCH:ROUTED"]
    assert len(routed) == 1, dispatched
    assert routed[0].get("worker") == decision.worker.value
    assert routed[0].get("kind") == kind.value and routed[0].get("order_id") == order_id
    trace_id = routed[0].get("trace_id")
    assert trace_id
    worker = decision.worker.value
    done = [
        r
        for r in logs.find(f"worker_{worker}", f"{worker.upper()}:SUCCESS")
        if r.get("trace_id") == trace_id
    ]
    assert len(done) == 1
    assert done[0].get("order_id") == order_id and done[0].get("processing_time_ms") is not None
    expect = EXPECTED[(kind, status)]
    if expect.event is not None:
        written = [
            r
            for r in logs.find("db_writer", "DBWRITER:SUCCESS")
            if r.get("event_id") == f"{order_id}:{exec_id}:{expect.event}"
        ]
        assert len(written) == 1
    calcs = {(c["event.action"], c.get("exec_id")) for c in logs.calculations()}
    if expect.event == "ORDER_OPENED":
        assert ("ORDER_OPEN_CALC", exec_id) in calcs
    if expect.event == "ORDER_CLOSED":
        assert ("ORDER_CLOSE_CALC", exec_id) in calcs
