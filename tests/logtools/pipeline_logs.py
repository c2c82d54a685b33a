"""Logs written by the real writer (``execflow.logs``), shaped like a pipeline run.

Small rotation limits force rotated and gzipped backups; the dispatcher writes a
``RECEIVED`` line before it knows the order (trace id only), as the real one does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from execflow.logs import log_context, setup_logging
from execflow.settings import load_settings

SMALL = {
    "dispatcher": 6000,
    "worker_open": 5000,
    "worker_close": 5000,
    "provider_errors": 4000,
    "orders_calculated": 8000,
}


@dataclass
class Written:
    """What the run wrote, for the tests to compare against."""

    directory: Path
    orders: list[str] = field(default_factory=list)
    trace_ids: dict[str, list[str]] = field(default_factory=dict)
    failures: int = 0


def _apply(worker: object, kind: str, tag: str, i: int, oid: str, written: Written) -> None:
    from execflow.logs import EventLogger

    assert isinstance(worker, EventLogger)
    ms = round(0.5 + (i * 7) % 40 / 4, 2)
    worker.order_processing(
        f"{tag}:PROCESSING", order_id=oid, user=f"live:{i % 7}", symbol="EURUSD"
    )
    if i % 11 == 3:
        worker.skipped(f"{tag}:SKIP:DUPLICATE", order_id=oid, exec_id=f"ex-{kind}-{i}")
    elif i % 13 == 4:
        worker.parked(f"{tag}:PARKED", order_id=oid, attempt=1)
    elif i % 17 == 6:
        try:
            raise KeyError(f"no conversion rate for JPY {i}")
        except KeyError as exc:
            worker.failure(f"{tag}:ERROR", exc=exc, order_id=oid, note="line one\nline two")
            written.failures += 1
    elif i % 19 == 7:
        worker.dead_lettered(f"{tag}:DLQ", reason="precondition_timeout", order_id=oid)
    else:
        worker.calculation(
            f"ORDER_{kind.upper()}_CALC",
            order_id=oid,
            margin=Decimal("108.25"),
            lots=Decimal("0.1"),
        )
        worker.success(f"{tag}:SUCCESS", processing_time_ms=ms, order_id=oid, symbol="EURUSD")


def write_pipeline_logs(
    directory: Path, *, fmt: str = "text", orders: int = 120, instance: int = 1, first: int = 1000
) -> Written:
    """Run dispatcher, open and close through the real writer; returns what was written."""
    settings = load_settings(
        log_dir=directory,
        log_format=fmt,
        log_max_bytes=SMALL,
        # enough backups that retention drops no line (JSON lines carry the ECS header)
        log_backups=dict.fromkeys(SMALL, 60),
        log_gzip=True,
        stats_every_n=25,
        instance=instance,
    )
    written = Written(directory)
    with setup_logging(settings, "dispatcher", bridge=False) as system:
        dispatcher = system.logger("dispatcher")
        opener, closer = system.logger("open"), system.logger("close")
        for i in range(orders):
            oid = str(first + i)
            written.orders.append(oid)
            trace_open, trace_close = f"tr-{oid}-o", f"tr-{oid}-c"
            written.trace_ids[oid] = [trace_open, trace_close]
            with log_context(trace_id=trace_open):
                dispatcher.info("DISPATCH:RECEIVED", lifecycle_id=f"lc-{oid}", exec_id=f"e{oid}")
                if i % 23 == 9:
                    dispatcher.dead_lettered("DISPATCH:DLQ", reason="unknown_lifecycle_id")
                    continue
                dispatcher.success(
                    "DISPATCH:ROUTED", processing_time_ms=0.25, order_id=oid, queue="worker_open"
                )
                _apply(opener, "open", "OPEN", i, oid, written)
            with log_context(trace_id=trace_close):
                dispatcher.info("DISPATCH:RECEIVED", lifecycle_id=f"lc-{oid}-c", exec_id=f"f{oid}")
                dispatcher.success(
                    "DISPATCH:ROUTED", processing_time_ms=0.5, order_id=oid, queue="worker_close"
                )
                _apply(closer, "close", "CLOSE", i + 1, oid, written)
            if i % 40 == 39:
                system.flush()
                time.sleep(0.002)  # distinct timestamps across flushes
    return written
