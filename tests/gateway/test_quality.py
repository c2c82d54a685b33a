"""The gateway's quality recorder: log figures, metrics, STATS, records written and read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from execflow.backends.sql import SqlDatabase
from execflow.backends.sql_lp import SqlLpExecutionStore
from execflow.domain.enums import InstrumentType, LpOrderType, RequestKind, Side
from execflow.domain.lpquality import ExecutionStatus, new_execution
from execflow.domain.messages import ProviderRequest
from execflow.domain.models import InstrumentConfig
from execflow.gateway.executions import ExecutionWriter
from execflow.gateway.quality import QualityRecorder
from execflow.logs import setup_logging
from execflow.metrics import Metrics
from execflow.settings import Settings

D = Decimal
T0 = datetime(2025, 3, 3, 12, 0, 0, tzinfo=UTC)
EURUSD = InstrumentConfig(
    "std", "EURUSD", D(100000), "USD", InstrumentType.FOREX, D(10), D("0.0001")
)
QUOTE = (D("1.08500"), D("1.08502"))


def market(lid: str, side: Side = Side.BUY) -> ProviderRequest:
    return ProviderRequest(
        lid, RequestKind.OPEN, "live:1", "o-" + lid, "EURUSD", side, LpOrderType.MARKET, D("0.30")
    )


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


async def test_recorder_turns_reports_into_figures_metrics_stats_and_rows(tmp_path: Path) -> None:
    settings = Settings(log_dir=tmp_path / "logs")
    database = SqlDatabase(f"sqlite+aiosqlite:///{tmp_path / 'q.db'}")
    await database.connect()
    store = SqlLpExecutionStore(database)
    with setup_logging(settings, "lp_gateway") as logs:
        log = logs.logger("lp_gateway")
        metrics = Metrics("lp_gateway")
        writer = ExecutionWriter(store, log, interval_s=0.01)
        quality = QualityRecorder("lp1", log, metrics, writer, store.get)
        quality.sending(new_execution(market("a"), "lp1", T0, QUOTE, EURUSD, None))
        quality.sent("a")
        first = quality.report({"35": "8", "11": "a", "17": "e1", "39": "0"}, at(2.5))
        assert first == {"latency_ms": 2.5}
        fill = {"35": "8", "11": "a", "17": "e2", "39": "2", "14": "0.30", "6": "1.08512"}
        figures = quality.report(fill, at(4))
        assert figures == {
            "fill_latency_ms": 4.0,
            "slippage_pips": D("-1.00"),
            "slippage_usd": D("-3.00"),
        }
        assert quality.report(fill, at(5)) == {}  # a copy changes nothing
        quality.sending(new_execution(market("b", Side.SELL), "lp1", at(1), QUOTE, EURUSD, None))
        quality.sent("b")
        reject = {"35": "8", "11": "b", "17": "e3", "39": "8", "58": "Price off quotes"}
        quality.report(reject, at(3))
        # a report the pipeline would refuse (negative price) counts for nothing
        bad = {"35": "8", "11": "b", "17": "e4", "39": "2", "14": "0.30", "6": "-1"}
        assert quality.report(bad, at(6)) == {}
        stats = log.stats.snapshot()
        assert stats["fills"] == 1
        assert stats["rejects.price_off_quotes"] == 1
        assert stats["lots_requested_x100"] == 60
        assert stats["lots_filled_x100"] == 30
        text = metrics.exposition().decode()
        assert 'execflow_lp_rejects_total{lp="lp1",reason="price_off_quotes"} 1.0' in text
        assert 'execflow_lp_fill_seconds_count{lp="lp1"} 1.0' in text
        assert 'execflow_lp_first_report_seconds_count{lp="lp1"} 2.0' in text
        assert 'execflow_lp_slippage_pips_bucket{le="-1.0",lp="lp1"} 1.0' in text
        assert 'execflow_lp_slippage_usd_bucket{le="-1.0",lp="lp1"} 1.0' in text
        assert 'execflow_lp_lots_filled_total{lp="lp1"} 0.3' in text
        assert "order_id" not in text and '"a"' not in text

        # sent, and the process ends before its report comes
        quality.sending(new_execution(market("c"), "lp1", at(10), QUOTE, EURUSD, None))
        quality.sent("c")
        await writer.flush()
        stored = {e.lifecycle_id: e async for e in store.iter()}
        assert stored["a"] == quality.record("a")
        assert stored["a"].status is ExecutionStatus.EXECUTED
        assert stored["b"].reject_reason == "Price off quotes"

        assert stored["c"].status is ExecutionStatus.SENT

        # the next process (a restart) finds the record in the database for a late report
        writer = ExecutionWriter(store, log, interval_s=0.01)
        again = QualityRecorder("lp1", log, None, writer, store.get)
        late = {"35": "8", "11": "c", "17": "e9", "39": "2", "14": "0.30", "6": "1.08502"}
        assert again.report(late, at(50)) == {}
        await again.idle()
        await writer.flush()
        found = await store.get("c")
        assert found is not None and found == again.record("c")
        assert found.status is ExecutionStatus.EXECUTED and found.first_report_at == at(50)
        assert again.report({"35": "8", "11": "zz", "17": "e10", "39": "0"}, at(60)) == {}
        await again.idle()
        assert again.record("zz") is None
    await database.close()
