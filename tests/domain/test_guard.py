"""The report guard (DESIGN §11): contradictions are refused before any transition."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from execflow.domain.enums import OrderStatus, ReportStatus, RequestKind, Side
from execflow.domain.guard import GuardPolicy, check_report, expected_side
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import Order, Prices
from execflow.domain.outcomes import (
    OVERFILL,
    PRICE_OUT_OF_BAND,
    REPORT_MISMATCH,
    Applied,
    Duplicate,
    Mismatch,
)
from execflow.domain.routing import ROUTING_TABLE, DlqReason, Route, Worker
from execflow.domain.transitions import apply
from tests.domain.factories import EURUSD, NOW, PRICES, account, market_order

D = Decimal
S = ReportStatus
K = RequestKind

_OPEN_SIDE = {K.OPEN, K.PLACE_PENDING, K.MODIFY_PENDING, K.CANCEL_PENDING}


def _fill(**changes: object) -> ExecutionReport:
    base = ExecutionReport("e1", S.EXECUTED, "o1-open", cum_qty=D("0.5"), avg_px=D("1.08502"))
    return replace(base, **changes)  # type: ignore[arg-type]


def test_mismatch_reasons_are_dlq_reasons() -> None:
    assert {REPORT_MISMATCH, OVERFILL, PRICE_OUT_OF_BAND} <= {r.value for r in DlqReason}


def test_expected_side_follows_the_request_kind() -> None:
    order = market_order()
    for kind in K:
        side = expected_side(order, kind)
        assert side is (Side.BUY if kind in _OPEN_SIDE else Side.SELL), kind


def test_a_consistent_fill_passes() -> None:
    assert check_report(market_order(), _fill(symbol="EURUSD", side=Side.BUY), K.OPEN, PRICES) is (
        None
    )
    assert check_report(market_order(), _fill(symbol="eurusd"), K.OPEN, PRICES) is None


def test_fields_the_report_leaves_out_are_not_checked() -> None:
    assert check_report(market_order(), _fill(), K.OPEN, PRICES) is None
    bare = ExecutionReport("e1", S.REJECTED, "o1-open")
    assert check_report(market_order(), bare, K.OPEN, PRICES) is None


def test_each_contradiction_names_its_fields() -> None:
    order = market_order()
    both = check_report(order, _fill(symbol="GBPUSD", side=Side.SELL), K.OPEN, PRICES)
    assert both == Mismatch(
        REPORT_MISMATCH,
        {"symbol": "report=GBPUSD expected=EURUSD", "side": "report=SELL expected=BUY"},
    )
    assert both.detail == "symbol: report=GBPUSD expected=EURUSD; side: report=SELL expected=BUY"
    over = check_report(order, _fill(last_qty=D("0.6"), cum_qty=None), K.OPEN, PRICES)
    assert over == Mismatch(OVERFILL, {"last_qty": "report=0.6 expected=<= 0.5"})
    band = check_report(order, _fill(avg_px=D("1.2")), K.OPEN, PRICES)
    assert band is not None and band.reason == PRICE_OUT_OF_BAND
    assert band.fields == {"avg_px": "report=1.2 expected=1.03075..1.139271"}


def test_the_band_is_configurable_and_needs_a_quote() -> None:
    far = _fill(avg_px=D("1.2"))
    assert check_report(market_order(), far, K.OPEN, PRICES, GuardPolicy(D("0.2"))) is None
    assert check_report(market_order(), far, K.OPEN, PRICES, GuardPolicy(D(0))) is None
    assert check_report(market_order(), far, K.OPEN, Prices()) is None
    # only fills are priced: a rejection quoting a price is not a trade
    rejected = replace(far, ord_status=S.REJECTED)
    assert check_report(market_order(), rejected, K.OPEN, PRICES) is None


def test_a_report_already_applied_stays_a_duplicate() -> None:
    first = apply(Worker.OPEN, market_order(), account(), EURUSD, PRICES, _fill(), K.OPEN, NOW)
    assert isinstance(first, Applied)
    again = _fill(symbol="GBPUSD")  # same exec_id, now contradicting: still the duplicate
    outcome = apply(Worker.OPEN, first.order, first.account, EURUSD, PRICES, again, K.OPEN, NOW)
    assert isinstance(outcome, Duplicate)


_ROUTED = [
    (kind, status, decision.worker)
    for (kind, status), decision in ROUTING_TABLE.items()
    if isinstance(decision, Route)
]
_ACTIVE = [s for s in OrderStatus if not s.is_final]


@st.composite
def _contradictions(draw: st.DrawFn) -> tuple[Order, ExecutionReport, RequestKind, Worker]:
    kind, status, worker = draw(st.sampled_from(_ROUTED))
    side = draw(st.sampled_from(Side))
    qty = draw(st.decimals(min_value=D("0.01"), max_value=D(100), places=2))
    order = market_order(side=side, qty=qty, status=draw(st.sampled_from(_ACTIVE)), cum_qty=qty / 2)
    report = ExecutionReport(
        draw(st.text("abcdef0123456789", min_size=1, max_size=8)),
        status,
        "o1-x",
        cum_qty=qty if status.is_fill else None,
        avg_px=D("1.08501") if status.is_fill else None,
    )
    # a non-fill moves nothing by quantity or price: only what it names can contradict
    spoils = (
        ["symbol", "side", "cum_qty", "last_qty", "price"] if status.is_fill else ["symbol", "side"]
    )
    spoil = draw(st.sampled_from(spoils))
    if spoil == "symbol":
        report = replace(report, symbol=draw(st.sampled_from(["GBPUSD", "USDJPY", "EURUSD.x"])))
    elif spoil == "side":
        wrong = expected_side(order, kind).opposite
        report = replace(report, side=wrong)
    elif spoil == "cum_qty":
        report = replace(report, cum_qty=qty + draw(st.sampled_from([D("0.01"), D(1), D(1000)])))
    elif spoil == "last_qty":
        report = replace(report, last_qty=qty * 2, last_px=D("1.08501"))
    else:
        report = replace(report, avg_px=draw(st.sampled_from([D("0.5"), D("1.2"), D(150)])))
    return order, report, kind, worker


@settings(max_examples=400, deadline=None)
@given(_contradictions())
def test_any_contradicting_report_is_refused_by_every_transition(
    case: tuple[Order, ExecutionReport, RequestKind, Worker],
) -> None:
    order, report, kind, worker = case
    outcome = apply(worker, order, account(), EURUSD, PRICES, report, kind, NOW)
    assert isinstance(outcome, Mismatch), outcome
    assert outcome.reason in {REPORT_MISMATCH, OVERFILL, PRICE_OUT_OF_BAND}
    assert outcome.fields and all("report=" in said for said in outcome.fields.values())
