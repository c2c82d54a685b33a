"""Execution quality records: folding reports in, one record's figures, the per-LP summary."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from execflow.domain.enums import (
    InstrumentType,
    LpOrderType,
    ReportStatus,
    RequestKind,
    Side,
)
from execflow.domain.lpquality import (
    ExecutionStatus,
    LpExecution,
    apply_report,
    figures,
    new_execution,
    reason_label,
    slippage,
    summarise,
)
from execflow.domain.messages import ExecutionReport, ProviderRequest
from execflow.domain.models import InstrumentConfig, Quote

D = Decimal
T0 = datetime(2025, 3, 3, 12, 0, 0, tzinfo=UTC)
EURUSD = InstrumentConfig(
    "std", "EURUSD", D(100000), "USD", InstrumentType.FOREX, D(10), D("0.0001")
)
USDJPY = InstrumentConfig("std", "USDJPY", D(100000), "JPY", InstrumentType.FOREX, D(10), D("0.01"))


def ms(n: float) -> datetime:
    return T0 + timedelta(milliseconds=n)


def request(
    lid: str,
    kind: RequestKind = RequestKind.OPEN,
    side: Side = Side.BUY,
    qty: str = "0.30",
    order_type: LpOrderType = LpOrderType.MARKET,
    price: str | None = None,
    stop_px: str | None = None,
    symbol: str = "EURUSD",
) -> ProviderRequest:
    return ProviderRequest(
        lid,
        kind,
        "live:1",
        "o-" + lid,
        symbol,
        side,
        order_type,
        D(qty),
        price=D(price) if price else None,
        stop_px=D(stop_px) if stop_px else None,
    )


def report(
    lid: str,
    status: ReportStatus,
    n: int,
    cum: str | None = None,
    avg: str | None = None,
    reason: str | None = None,
    side: Side | None = None,
    symbol: str | None = None,
) -> ExecutionReport:
    return ExecutionReport(
        exec_id=f"x{n}",
        ord_status=status,
        lifecycle_id=lid,
        cum_qty=D(cum) if cum else None,
        avg_px=D(avg) if avg else None,
        reason=reason,
        side=side,
        symbol=symbol,
    )


def test_slippage_is_positive_in_the_clients_favour() -> None:
    assert slippage(Side.BUY, D("1.10002"), D("1.10000")) == D("0.00002")  # bought cheaper
    assert slippage(Side.BUY, D("1.10002"), D("1.10005")) == D("-0.00003")
    assert slippage(Side.SELL, D("1.10000"), D("1.10004")) == D("0.00004")  # sold higher


def test_the_reference_is_the_quote_for_market_orders_and_the_level_otherwise() -> None:
    quote = (D("1.08500"), D("1.08502"))
    buy = new_execution(request("a"), "lp1", T0, quote, EURUSD, None)
    sell = new_execution(request("b", side=Side.SELL), "lp1", T0, quote, EURUSD, None)
    stop = request("c", RequestKind.PLACE_SL, Side.SELL, order_type=LpOrderType.STOP)
    stop = replace(stop, stop_px=D("1.08"))
    limit = request("d", RequestKind.PLACE_PENDING, order_type=LpOrderType.LIMIT, price="1.07")
    cancel = request("e", RequestKind.CANCEL_PENDING, order_type=LpOrderType.LIMIT)
    assert buy.reference_px == D("1.08502") and sell.reference_px == D("1.08500")
    assert new_execution(stop, "lp1", T0, quote, EURUSD, None).reference_px == D("1.08")
    assert new_execution(limit, "lp1", T0, quote, EURUSD, None).reference_px == D("1.07")
    assert new_execution(cancel, "lp1", T0, quote, EURUSD, None).reference_px is None
    assert buy.pip == D("0.0001") and buy.contract_size == D(100000)
    assert new_execution(request("f"), "lp1", T0, (None, None), None, None).reference_px is None


def test_reports_fold_in_whatever_their_order_and_copies() -> None:
    start = new_execution(
        request("a", qty="0.30"), "lp1", T0, (D("1.085"), D("1.0852")), EURUSD, None
    )
    reports = [
        (report("a", ReportStatus.PENDING, 1), ms(2)),
        (report("a", ReportStatus.PARTIALLY_FILLED, 2, "0.10", "1.0853"), ms(3)),
        (report("a", ReportStatus.EXECUTED, 3, "0.30", "1.08525"), ms(4)),
        (report("a", ReportStatus.EXECUTED, 3, "0.30", "1.08525"), ms(9)),  # a copy
    ]
    finals = set()
    for order in itertools.permutations(reports):
        execution = start
        for each, at in order:
            execution = apply_report(execution, each, at)
        assert execution.status is ExecutionStatus.EXECUTED
        assert execution.cum_qty == D("0.30") and execution.avg_px == D("1.08525")
        # the earliest of the reports that came is the first report, whatever came first
        assert execution.first_report_at == min(at for _, at in order)
        finals.add((execution.cum_qty, execution.avg_px, execution.first_report_at))
    assert len(finals) == 1


def test_a_final_status_is_never_replaced_and_reasons_are_kept() -> None:
    start = new_execution(
        request("a", RequestKind.CANCEL_PENDING, order_type=LpOrderType.LIMIT),
        "lp1",
        T0,
        (None, None),
        EURUSD,
        None,
    )
    rejected = apply_report(
        start, report("a", ReportStatus.REJECTED, 1, reason="Too  late\nto cancel"), ms(5)
    )
    assert rejected.status is ExecutionStatus.REJECTED
    assert rejected.reject_reason == "Too late to cancel"
    assert rejected.done_at == ms(5)
    later = apply_report(rejected, report("a", ReportStatus.CANCELLED, 2), ms(6))
    assert later.status is ExecutionStatus.REJECTED and later.done_at == ms(5)
    assert reason_label("Price off quotes!") == "price_off_quotes"
    assert reason_label("\u2026") == "unknown"


def test_a_report_contradicting_the_request_counts_for_nothing() -> None:
    start = new_execution(request("a"), "lp1", T0, (D("1.085"), D("1.0852")), EURUSD, None)
    fill = report("a", ReportStatus.EXECUTED, 1, "0.30", "1.09", side=Side.SELL)
    assert apply_report(start, fill, ms(3)) == start
    other = report("a", ReportStatus.EXECUTED, 1, "0.30", "1.09", symbol="GBPUSD")
    assert apply_report(start, other, ms(3)) == start


def test_figures_of_a_market_order_in_pips_and_usd() -> None:
    quote = (D("1.08500"), D("1.08502"))
    start = new_execution(request("a", qty="0.30"), "lp1", T0, quote, EURUSD, None)
    done = apply_report(start, report("a", ReportStatus.EXECUTED, 1, "0.30", "1.08512"), ms(7.5))
    measured = figures(done)
    assert measured.first_report_ms == 7.5 and measured.fill_ms == 7.5
    assert measured.slippage_pips == D("-1")  # paid one pip more than the ask
    assert measured.slippage_usd == D("-3.0")  # 0.0001 x 0.30 lots x 100000
    # JPY profit converted through USDJPY: the client's loss at the larger USD figure
    jpy = new_execution(
        request("j", side=Side.SELL, qty="1", symbol="USDJPY"),
        "lp1",
        T0,
        (D("150.000"), D("150.030")),
        USDJPY,
        Quote("USDJPY", D("150.000"), D("150.030")),
    )
    filled = apply_report(jpy, report("j", ReportStatus.EXECUTED, 2, "1", "149.970"), ms(1))
    jpy_figures = figures(filled)
    assert jpy_figures.slippage_pips == D("-3")
    assert jpy_figures.slippage_usd == D(-3000) / D("150.000")
    # a resting order's fill has slippage but no fill latency (it waited for the price)
    leg = request("l", RequestKind.PLACE_TP, Side.SELL, order_type=LpOrderType.LIMIT, price="1.09")
    tp = new_execution(leg, "lp1", T0, quote, EURUSD, None)
    tp = apply_report(tp, report("l", ReportStatus.EXECUTED, 3, "0.30", "1.09"), ms(90_000))
    assert figures(tp).fill_ms is None and figures(tp).slippage_pips == 0


def test_summary_per_lp() -> None:
    quote = (D("1.08500"), D("1.08502"))
    records: list[LpExecution] = []
    a = new_execution(request("a", qty="1"), "lp1", T0, quote, EURUSD, None)
    records.append(apply_report(a, report("a", ReportStatus.EXECUTED, 1, "1", "1.08502"), ms(4)))
    b = new_execution(request("b", qty="1"), "lp1", ms(1), quote, EURUSD, None)
    records.append(
        apply_report(b, report("b", ReportStatus.REJECTED, 2, reason="Price off quotes"), ms(3))
    )
    c = new_execution(request("c", qty="2", side=Side.SELL), "lp1", ms(2), quote, EURUSD, None)
    records.append(apply_report(c, report("c", ReportStatus.EXECUTED, 3, "2", "1.08510"), ms(8)))
    records.append(new_execution(request("d"), "lp2", ms(3), quote, EURUSD, None))
    lp1, lp2 = summarise(records)
    assert lp1.lp == "lp1" and lp1.requests == 3 and lp1.answered == 3
    assert lp1.lots_requested == D(4) and lp1.lots_filled == D(3)
    assert lp1.fill_ratio == D("0.75")
    assert lp1.rejected == 1 and lp1.reject_ratio == D(1) / D(3)
    assert lp1.rejects_by_reason == {"Price off quotes": 1}
    assert lp1.first_report.count == 3 and lp1.first_report.max_ms == 6.0
    assert lp1.first_report.p50_ms == 4.0  # of 2, 4 and 6 ms
    assert lp1.fill.count == 2
    assert lp1.slippage.count == 2 and lp1.slippage.favourable == 1 and lp1.slippage.zero == 1
    assert lp1.slippage.mean_pips == D("0.5")  # (0 + 1) / 2
    assert lp1.slippage.total_usd == D("20.0")  # 0.0001 x 2 lots x 100000
    assert lp2.requests == 1 and lp2.answered == 0 and lp2.first_report.count == 0
    document = lp1.to_dict()
    assert document["fill_ratio"] == "0.75" and document["first_report"]["max_ms"] == 6.0
