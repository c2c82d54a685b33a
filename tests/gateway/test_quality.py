"""Per-LP execution quality: latency to first report and fill, signed slippage, rejects, fills."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from execflow.domain.enums import LpOrderType, RequestKind, Side
from execflow.domain.messages import ProviderRequest
from execflow.gateway.quality import QualityRecorder, reject_reason, slippage
from execflow.logs import setup_logging
from execflow.metrics import Metrics
from execflow.settings import Settings

D = Decimal


def test_slippage_is_positive_in_the_clients_favour() -> None:
    assert slippage(Side.BUY, D("1.10002"), D("1.10000")) == D("0.00002")  # bought cheaper
    assert slippage(Side.BUY, D("1.10002"), D("1.10005")) == D("-0.00003")
    assert slippage(Side.SELL, D("1.10000"), D("1.10004")) == D("0.00004")  # sold higher


def test_reject_reasons_are_short_labels() -> None:
    assert reject_reason("9", {}) == "cancel_reject"
    assert reject_reason("8", {"103": "6", "58": "dup"}) == "ord_rej_reason_6"
    assert reject_reason("8", {"58": "Price off quotes!"}) == "price_off_quotes"


def market(lid: str, side: Side = Side.BUY) -> ProviderRequest:
    return ProviderRequest(
        lid, RequestKind.OPEN, "live:1", lid, "EURUSD", side, LpOrderType.MARKET, D("0.30")
    )


def test_recorder_turns_reports_into_metrics_and_stats(tmp_path: Path) -> None:
    settings = Settings(log_dir=tmp_path / "logs")
    with setup_logging(settings, "lp_gateway") as logs:
        log = logs.logger("lp_gateway")
        metrics = Metrics("lp_gateway")
        quality = QualityRecorder("lp1", log, metrics)
        quality.sent(market("a"), (D("1.08500"), D("1.08502")))
        first = quality.report("8", {"11": "a", "39": "0"}, D("0.0001"))
        assert "latency_ms" in first
        fill = {"11": "a", "39": "2", "31": "1.08512", "14": "0.30"}
        figures = quality.report("8", fill, D("0.0001"))
        assert figures["slippage_pips"] == D("-1.00")  # paid 1 pip more than the ask
        quality.sent(market("b", Side.SELL), (D("1.08500"), D("1.08502")))
        quality.report("8", {"11": "b", "39": "8", "58": "Price off quotes"}, D("0.0001"))
        stats = log.stats.snapshot()
        assert stats["fills"] == 1
        assert stats["rejects.price_off_quotes"] == 1
        assert stats["lots_requested_x100"] == 60
        assert stats["lots_filled_x100"] == 30
        text = metrics.exposition().decode()
        assert 'execflow_lp_rejects_total{lp="lp1",reason="price_off_quotes"} 1.0' in text
        assert 'execflow_lp_fill_seconds_count{lp="lp1"} 1.0' in text
        assert 'execflow_lp_slippage_pips_bucket{le="-1.0",lp="lp1"} 1.0' in text
        assert 'execflow_lp_lots_filled_total{lp="lp1"} 0.3' in text
        assert "order_id" not in text and '"a"' not in text
