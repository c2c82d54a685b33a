"""Report normalisation: JSON with names, aliases and tags; raw FIX; strict validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execflow.domain.enums import ReportStatus, Side
from execflow.domain.messages import ExecutionReport, NonExecutionMessage
from execflow.domain.reports import DERIVED_EXEC_ID_PREFIX, normalise, parse_fix, parse_message
from execflow.errors import ReportError

SOH = "\x01"


def _fix(*fields: str, sep: str = SOH, checksum: bool = True) -> str:
    body = SOH.join(fields) + SOH
    text = body
    if checksum:
        text += f"10={sum(body.encode()) % 256:03d}{SOH}"
    return text.replace(SOH, sep)


def _report(data: Any) -> ExecutionReport:
    result = data if isinstance(data, ExecutionReport) else normalise(data)
    assert isinstance(result, ExecutionReport)
    return result


def test_json_with_named_fields() -> None:
    raw = (
        b'{"lifecycle_id": "L1", "exec_id": "E1", "ord_status": "2", "avg_px": 1.08500,'
        b' "cum_qty": "0.5", "side": "BUY", "symbol": "EURUSD",'
        b' "transact_time": "2026-11-29T12:00:00Z", "provider": "lp1"}'
    )
    report = parse_message(raw)
    assert report == ExecutionReport(
        exec_id="E1",
        ord_status=ReportStatus.EXECUTED,
        lifecycle_id="L1",
        avg_px=Decimal("1.08500"),
        cum_qty=Decimal("0.5"),
        side=Side.BUY,
        symbol="EURUSD",
        transact_time=datetime(2026, 11, 29, 12, tzinfo=UTC),
        provider="lp1",
    )
    # the JSON number keeps its exact text: no float ever existed
    assert isinstance(report, ExecutionReport)
    assert str(report.avg_px) == "1.08500"


@pytest.mark.parametrize("alias", ["order_id", "clordid", "ClOrdID", "11", "lifecycle_id"])
def test_lifecycle_id_aliases(alias: str) -> None:
    assert _report({alias: "L7", "17": "E", "39": "0"}).lifecycle_id == "L7"


def test_fix_tag_numbers_as_json_keys() -> None:
    report = _report(
        {
            "35": "8",
            "11": "L1",
            "41": "L0",
            "17": "E1",
            "37": "LP9",
            "39": "1",
            "150": "F",
            "6": "1.1",
            "14": "0.2",
            "31": "1.1",
            "32": "0.2",
            "151": "0.3",
            "54": "2",
            "55": "EURUSD",
            "58": "partial",
            "60": "20261129-12:00:00.123",
        }
    )
    assert report.ord_status is ReportStatus.PARTIALLY_FILLED
    assert report.exec_type == "F"
    assert (report.orig_lifecycle_id, report.lp_order_id) == ("L0", "LP9")
    assert (report.last_px, report.last_qty, report.leaves_qty) == (
        Decimal("1.1"),
        Decimal("0.2"),
        Decimal("0.3"),
    )
    assert report.side is Side.SELL
    assert report.reason == "partial"
    assert report.transact_time == datetime(2026, 11, 29, 12, 0, 0, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("2", ReportStatus.EXECUTED),
        ("F", ReportStatus.EXECUTED),
        ("1", ReportStatus.PARTIALLY_FILLED),
        ("0", ReportStatus.PENDING),
        ("A", ReportStatus.PENDING),
        ("5", ReportStatus.MODIFY),
        ("4", ReportStatus.CANCELLED),
        ("C", ReportStatus.CANCELLED),
        ("8", ReportStatus.REJECTED),
        ("CANCELED", ReportStatus.CANCELLED),
        ("new", ReportStatus.PENDING),
    ],
)
def test_status_codes(code: str, status: ReportStatus) -> None:
    fill = {"14": "1", "6": "1.2"}
    assert _report({"17": "E", "39": code, **fill}).ord_status is status
    # ExecType (150) is used when OrdStatus (39) is absent
    assert _report({"17": "E", "150": code, **fill}).ord_status is status


@pytest.mark.parametrize("sep", [SOH, "|"])
def test_raw_fix_message(sep: str) -> None:
    text = _fix(
        "8=FIX.4.4", "9=100", "35=8", "11=L1", "17=E1", "39=2", "150=F", "6=1.085", "14=0.5",
        "54=1", "55=EURUSD", "60=20261129-12:00:00", sep=sep,
    )  # fmt: skip
    report = parse_message(text.encode())
    assert isinstance(report, ExecutionReport)
    assert (report.lifecycle_id, report.ord_status, report.cum_qty) == (
        "L1",
        ReportStatus.EXECUTED,
        Decimal("0.5"),
    )


def test_fix_without_checksum_is_accepted_and_bad_checksum_is_not() -> None:
    assert isinstance(parse_fix(_fix("35=8", "17=E", "39=0", checksum=False)), ExecutionReport)
    bad = _fix("35=8", "17=E", "39=0", checksum=False) + "10=000" + SOH
    with pytest.raises(ReportError) as err:
        parse_fix(bad)
    assert err.value.field == "10"


@pytest.mark.parametrize(
    ("raw", "name"),
    [(_fix("35=0"), "heartbeat"), (_fix("35=A"), "logon"), ('{"type": "ack"}', "ack")],
)
def test_non_execution_messages_are_recognised(raw: str, name: str) -> None:
    assert parse_message(raw) == NonExecutionMessage(name)


def test_missing_lifecycle_id_is_not_a_parse_error() -> None:
    assert _report({"17": "E", "39": "0"}).lifecycle_id is None


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"39": "2", "32": "1", "31": "1.1"}, "exec_id"),
        ({"17": "E"}, "ord_status"),
        ({"17": "E", "39": "9"}, "ord_status"),
        ({"17": "E", "39": "2", "6": "1.1"}, "cum_qty"),
        ({"17": "E", "39": "2", "14": "1"}, "avg_px"),
        ({"17": "E", "39": "2", "14": "1", "6": "1e5"}, "avg_px"),
        ({"17": "E", "39": "2", "14": "1", "6": "NaN"}, "avg_px"),
        ({"17": "E", "39": "2", "14": "-1", "6": "1"}, "cum_qty"),
        ({"17": "E", "39": "2", "14": 1.5, "6": "1"}, "cum_qty"),
        ({"17": "E", "39": "2", "14": True, "6": "1"}, "cum_qty"),
        ({"17": "E", "39": "2", "14": Decimal("Infinity"), "6": "1"}, "cum_qty"),
        ({"17": "E", "39": "2", "14": "1", "32": "2", "6": "1"}, "last_qty"),
        ({"17": "E", "39": "0", "54": "7"}, "side"),
        ({"17": "E", "39": "0", "60": "yesterday"}, "transact_time"),
        ({"17": "E", "39": "0", "11": "A", "order_id": "B"}, "lifecycle_id"),
        ({"17": "E", "39": "0", "11": ""}, "lifecycle_id"),
        ({"17": "E", "39": "0", "11": ["x"]}, "lifecycle_id"),
        ({"35": "D", "17": "E"}, "type"),
    ],
)
def test_invalid_reports_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ReportError) as err:
        normalise(data)
    assert err.value.field == field


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xff\xfe", b"hello", b"[1, 2]", b"{not json", b'{"17": NaN}', b"35=8|17|39=0"],
)
def test_unparseable_messages(raw: bytes) -> None:
    with pytest.raises(ReportError):
        parse_message(raw)


def test_fix_requires_msg_type_and_unique_tags() -> None:
    with pytest.raises(ReportError, match="missing"):
        parse_fix(_fix("17=E", "39=0"))
    with pytest.raises(ReportError, match="duplicate"):
        parse_fix(_fix("35=8", "17=E", "17=F", "39=0"))


def test_zero_price_means_no_price_and_reject_code_becomes_reason() -> None:
    report = _report({"17": "E", "39": "8", "44": "0", "99": "1.2", "103": "3"})
    assert report.price is None
    assert report.level == Decimal("1.2")
    assert report.reason == "ord_rej_reason=3"


@settings(max_examples=150, deadline=None)
@given(
    st.decimals(min_value=0, max_value=Decimal("1e9"), allow_nan=False, places=8),
    st.sampled_from(["6", "14", "31", "32", "151"]),
)
def test_decimals_parse_exactly(value: Decimal, tag: str) -> None:
    text = f"{value:f}"
    report = _report(json.loads(json.dumps({"17": "E", "39": "0", tag: text})))
    name = {"6": "avg_px", "14": "cum_qty", "31": "last_px", "32": "last_qty"}.get(
        tag, "leaves_qty"
    )
    # same value and same exponent: the precision the LP sent is kept
    assert getattr(report, name).as_tuple() == Decimal(text).as_tuple()


def test_free_text_keeps_control_characters_and_a_long_text_is_cut() -> None:
    hostile = "Too late\r\n\x1b[2J\x85\u2028\u202eevil"
    report = _report({"17": "E", "39": "8", "58": hostile})
    assert report.reason == hostile
    long = _report({"17": "E", "39": "8", "58": "x" * 5000}).reason
    assert long is not None and len(long) == 256 and long.endswith("\u2026")
    # ids are opaque: a control character is no reason to refuse (it resolves to nothing)
    assert _report({"17": "E\x1b", "39": "0", "11": "a\nb"}).lifecycle_id == "a\nb"


def test_a_report_without_exec_id_gets_an_id_derived_from_what_it_says() -> None:
    reject = {"11": "L1", "39": "8", "58": "No liquidity"}
    first = _report(reject)
    assert first.exec_id.startswith(DERIVED_EXEC_ID_PREFIX)
    assert _report(dict(reject)).exec_id == first.exec_id  # a redelivery: the same id
    assert _report({**reject, "58": "Other"}).exec_id != first.exec_id
    fill = _report({"11": "L1", "39": "2", "14": "1", "6": "1.1"})
    assert fill.exec_id.startswith(DERIVED_EXEC_ID_PREFIX)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "nested too deeply"),
        (b'{"a":[' + b"[" * 100_000, "nested too deeply|invalid JSON"),
        ("35=8|17=E|39=0|11=\ud800".encode("utf-8", "surrogatepass"), "not valid utf-8"),
    ],
)
def test_every_parser_failure_is_a_report_error(raw: bytes, reason: str) -> None:
    with pytest.raises(ReportError, match=reason):
        parse_message(raw)


def _strptime_reference(raw: str) -> datetime | None:
    """What the FIX UTCTimestamp parse was before it stopped calling strptime."""
    day, _, rest = raw.partition("-")
    clock, _, frac = rest.partition(".")
    try:
        parsed = datetime.strptime(day + clock.replace(":", ""), "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return parsed.replace(microsecond=int((frac or "0").ljust(6, "0")[:6]), tzinfo=UTC)


def _two_digits(low: int, high: int) -> st.SearchStrategy[str]:
    """Mostly in range (valid timestamps are common), sometimes any two digits."""
    return st.one_of(
        st.integers(low, high).map("{:02d}".format), st.text("0123456789", min_size=2, max_size=2)
    )


@given(
    year=st.text("0123456789", min_size=4, max_size=4),
    month=_two_digits(1, 12),
    day=_two_digits(1, 31),
    hour=_two_digits(0, 23),
    minute=_two_digits(0, 59),
    second=_two_digits(0, 59),
    frac=st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=9).map(".".__add__)),
)
@settings(max_examples=400)
def test_fix_transact_time_parses_as_strptime_did(
    year: str, month: str, day: str, hour: str, minute: str, second: str, frac: str
) -> None:
    raw = f"{year}{month}{day}-{hour}:{minute}:{second}{frac}"
    expected = _strptime_reference(raw)
    doc = {"17": "E", "39": "0", "60": raw}
    if expected is None:
        with pytest.raises(ReportError, match="transact_time"):
            normalise(doc)
    else:
        assert _report(doc).transact_time == expected


@pytest.mark.parametrize(
    "raw",
    [
        "20261206-07:00:00",
        "20261206-23:59:59.999999999",
        "20240229-12:00:00.5",
        "20230229-12:00:00",
        "20261306-07:00:00",
        "20261232-07:00:00",
        "20261206-24:00:00",
        "20261206-07:60:00",
        "20261206-07:00:60",
        "00001206-07:00:00",
    ],
)
def test_fix_transact_time_edges_parse_as_strptime_did(raw: str) -> None:
    expected = _strptime_reference(raw)
    doc = {"17": "E", "39": "0", "60": raw}
    if expected is None:
        with pytest.raises(ReportError, match="transact_time"):
            normalise(doc)
    else:
        assert _report(doc).transact_time == expected
