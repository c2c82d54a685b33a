"""Every wire format normalises back to the same report; malformed messages never do."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from execflow.domain.enums import ReportStatus, Side
from execflow.domain.messages import ExecutionReport
from execflow.domain.reports import parse_message
from execflow.errors import ReportError
from execflow.sim.wire import WireFormat, encode_report, malformed

REPORT = ExecutionReport(
    exec_id="run-E7",
    ord_status=ReportStatus.PARTIALLY_FILLED,
    lifecycle_id="3163458366000",
    orig_lifecycle_id="3163458366000-modify-v2",
    lp_order_id="run-L3",
    avg_px=Decimal("1.08512"),
    cum_qty=Decimal("0.05"),
    last_px=Decimal("1.08512"),
    last_qty=Decimal("0.05"),
    leaves_qty=Decimal("0.05"),
    side=Side.SELL,
    symbol="EURUSD",
    reason="partial fill",
    transact_time=datetime(2026, 11, 29, 12, 47, 0, 123456, tzinfo=UTC),
    provider="sim",
)


@pytest.mark.parametrize("fmt", list(WireFormat))
def test_each_format_round_trips_through_the_normaliser(fmt: WireFormat) -> None:
    parsed = parse_message(encode_report(REPORT, fmt, seq=3), provider="sim")
    assert isinstance(parsed, ExecutionReport)
    for name in (
        "exec_id",
        "ord_status",
        "lifecycle_id",
        "orig_lifecycle_id",
        "lp_order_id",
        "avg_px",
        "cum_qty",
        "last_px",
        "last_qty",
        "leaves_qty",
        "side",
        "symbol",
        "reason",
        "transact_time",
        "provider",
    ):
        assert getattr(parsed, name) == getattr(REPORT, name), name


def test_fix_messages_carry_a_valid_checksum_and_pipes() -> None:
    raw = encode_report(REPORT, WireFormat.FIX).decode()
    assert raw.startswith("8=FIX.4.4|9=") and "|10=" in raw and raw.endswith("|")


def test_every_malformed_variant_is_refused_by_the_normaliser() -> None:
    rng = random.Random(3)
    seen = set()
    for _ in range(200):
        variant, body = malformed(REPORT, rng)
        seen.add(variant)
        with pytest.raises(ReportError):
            parse_message(body)
    assert len(seen) == 6
