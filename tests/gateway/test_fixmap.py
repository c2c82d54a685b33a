"""The gateway's FIX mapping, as plain data: requests out, reports and quotes in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from execflow.domain.enums import LpOrderType, ReportStatus, RequestKind, Side
from execflow.domain.messages import ExecutionReport, ProviderRequest
from execflow.domain.reports import parse_message
from execflow.gateway.fixmap import (
    QuoteUpdate,
    SentRef,
    parse_fields,
    quote_updates,
    report_document,
    report_fields,
    request_fields,
    request_from_fields,
)

D = Decimal
NOW = datetime(2026, 12, 5, 12, 0, 1, 250000, tzinfo=UTC)


def request(kind: RequestKind, order_type: LpOrderType, **extra: object) -> ProviderRequest:
    fields: dict[str, object] = {
        "lifecycle_id": f"L-{kind.value}",
        "kind": kind,
        "account_id": "",
        "order_id": "o1",
        "symbol": "EURUSD",
        "side": Side.SELL,
        "order_type": order_type,
        "qty": D("0.25"),
    }
    fields.update(extra)
    return ProviderRequest(**fields)  # type: ignore[arg-type]


KINDS = [
    (request(RequestKind.OPEN, LpOrderType.MARKET), "D"),
    (request(RequestKind.CLOSE, LpOrderType.MARKET), "D"),
    (request(RequestKind.PLACE_PENDING, LpOrderType.LIMIT, price=D("1.09001")), "D"),
    (request(RequestKind.PLACE_PENDING, LpOrderType.STOP, stop_px=D("1.07")), "D"),
    (request(RequestKind.PLACE_SL, LpOrderType.STOP, stop_px=D("1.1")), "D"),
    (request(RequestKind.PLACE_TP, LpOrderType.LIMIT, price=D("1.05")), "D"),
    (
        request(
            RequestKind.MODIFY_PENDING,
            LpOrderType.LIMIT,
            price=D("1.091"),
            orig_lifecycle_id="L-prev",
        ),
        "G",
    ),
    (
        request(RequestKind.CANCEL_PENDING, LpOrderType.MARKET, orig_lifecycle_id="L-prev"),
        "F",
    ),
]


@pytest.mark.parametrize(
    ("sent", "msg_type"), KINDS, ids=[k.kind.value + k.order_type for k, _ in KINDS]
)
def test_every_request_kind_maps_to_its_message_and_reads_back(
    sent: ProviderRequest, msg_type: str
) -> None:
    got_type, fields = request_fields(sent, NOW)
    assert got_type == msg_type
    tags = dict(fields)
    assert tags[11] == sent.lifecycle_id  # ClOrdID is the lifecycle id
    assert tags[526] == "o1"
    assert tags[54] == "2"
    assert tags[38] == "0.25"
    assert tags[60] == "20261205-12:00:01.250"
    assert request_from_fields(got_type, fields) == sent


def test_market_orders_are_ioc_and_resting_orders_gtc() -> None:
    market = dict(request_fields(KINDS[0][0], NOW)[1])
    limit = dict(request_fields(KINDS[2][0], NOW)[1])
    assert (market[40], market[59], market[77]) == ("1", "3", "O")
    assert (limit[40], limit[44], limit[59]) == ("2", "1.09001", "1")
    assert 99 not in limit
    close = dict(request_fields(KINDS[1][0], NOW)[1])
    assert close[77] == "C"


def fill(**extra: object) -> ExecutionReport:
    values: dict[str, object] = {
        "exec_id": "E1",
        "ord_status": ReportStatus.PARTIALLY_FILLED,
        "lifecycle_id": "L1",
        "lp_order_id": "LP1",
        "avg_px": D("1.08512"),
        "cum_qty": D("0.10"),
        "last_px": D("1.08512"),
        "last_qty": D("0.10"),
        "leaves_qty": D("0.15"),
        "side": Side.BUY,
        "symbol": "EURUSD",
        "transact_time": datetime(2026, 12, 5, 12, 0, 1, 123000, tzinfo=UTC),
        "provider": "lp1",
    }
    values.update(extra)
    return ExecutionReport(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "report",
    [
        fill(),
        fill(ord_status=ReportStatus.EXECUTED, leaves_qty=D(0)),
        fill(
            ord_status=ReportStatus.REJECTED,
            lp_order_id=None,
            avg_px=None,
            cum_qty=D(0),
            last_px=None,
            last_qty=None,
            leaves_qty=D(0),
            reason="Price off quotes",
        ),
        fill(
            ord_status=ReportStatus.MODIFY,
            orig_lifecycle_id="L0",
            avg_px=None,
            cum_qty=D(0),
            last_px=None,
            last_qty=None,
            price=D("1.09"),
        ),
    ],
    ids=["partial", "filled", "rejected", "modified"],
)
def test_an_execution_report_crosses_the_wire_unchanged(report: ExecutionReport) -> None:
    raw = "".join(f"{t}={v}\x01" for t, v in [(35, "8"), (34, "7"), *report_fields(report)])
    msg_type, fields = parse_fields(raw)
    doc = report_document(msg_type, fields, "lp1")
    assert doc is not None
    parsed = parse_message(orjson.dumps(doc))
    assert isinstance(parsed, ExecutionReport)
    expected = report
    if report.avg_px is None:
        # FIX requires AvgPx / CumQty: a non-fill says 0
        assert parsed.avg_px == 0
        parsed = replace(parsed, avg_px=None)
    assert _as_dict(parsed) == {**_as_dict(expected), "exec_type": parsed.exec_type}


def _as_dict(report: ExecutionReport) -> dict[str, object]:
    return {name: getattr(report, name) for name in report.__slots__}


def test_cancel_reject_is_a_rejected_report_for_the_cancel_request() -> None:
    fields = [(34, "9"), (37, "LP7"), (11, "L-cancel"), (41, "L-place"), (39, "0"), (434, "1")]
    fields.append((102, "1"))
    doc = report_document("9", fields, "lp1")
    assert doc is not None
    parsed = parse_message(orjson.dumps(doc))
    assert isinstance(parsed, ExecutionReport)
    assert parsed.ord_status is ReportStatus.REJECTED
    assert parsed.lifecycle_id == "L-cancel"
    assert parsed.orig_lifecycle_id == "L-place"
    assert parsed.exec_id == "cxlrej-L-cancel"  # stable: a re-sent copy is applied once
    assert parsed.reason == "cxl_rej_reason=1"
    assert parsed.provider == "lp1"


def test_business_reject_of_an_order_is_a_rejected_report() -> None:
    fields = [(45, "12"), (372, "D"), (379, "L-open"), (380, "3"), (58, "not authorised")]
    doc = report_document("j", fields, "lp1")
    assert doc is not None
    parsed = parse_message(orjson.dumps(doc))
    assert isinstance(parsed, ExecutionReport)
    assert (parsed.lifecycle_id, parsed.reason) == ("L-open", "not authorised")
    assert parsed.ord_status is ReportStatus.REJECTED
    # a business reject of something that is not an order request routes nowhere
    assert report_document("j", [(45, "3"), (372, "V"), (379, "md-1")], "lp1") is None


def test_session_reject_needs_the_request_it_refers_to() -> None:
    fields = [(45, "12"), (371, "38"), (373, "5"), (58, "bad qty")]
    assert report_document("3", fields, "lp1") is None
    doc = report_document("3", fields, "lp1", SentRef("D", "L-open"))
    assert doc is not None
    parsed = parse_message(orjson.dumps(doc))
    assert isinstance(parsed, ExecutionReport)
    assert parsed.lifecycle_id == "L-open"
    assert parsed.ord_status is ReportStatus.REJECTED
    assert parsed.reason == "session reject (tag 38): bad qty"


def test_quotes_from_snapshot_and_incrementals() -> None:
    snapshot = [(262, "r"), (55, "EURUSD"), (268, "2"), (269, "0"), (270, "1.1")]
    snapshot += [(269, "1"), (270, "1.2")]
    assert quote_updates("W", snapshot) == [QuoteUpdate("EURUSD", D("1.1"), D("1.2"))]
    incremental = [(268, "3"), (279, "1"), (269, "1"), (55, "GBPUSD"), (270, "1.3")]
    incremental += [(279, "2"), (269, "0"), (55, "GBPUSD"), (270, "1.0")]  # a delete
    incremental += [(279, "0"), (269, "0"), (55, "EURUSD"), (270, "1.15")]
    assert quote_updates("X", incremental) == [
        QuoteUpdate("GBPUSD", None, D("1.3")),
        QuoteUpdate("EURUSD", D("1.15"), None),
    ]
    with pytest.raises(ValueError, match="270"):
        quote_updates("W", [(55, "EURUSD"), (269, "0"), (270, "-1")])
