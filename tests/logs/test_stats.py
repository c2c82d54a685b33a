"""STATS lines: every N processed, every interval (injected clock), and at shutdown."""

from __future__ import annotations

from pathlib import Path

import pytest

from execflow.clock import FakeClock
from execflow.logs import ComponentStats

from .conftest import SystemFactory, split_lines
from .test_format import parse_fields


def _stats_lines(log_dir: Path, name: str) -> list[dict[str, str]]:
    lines = split_lines((log_dir / name).read_bytes())
    return [parse_fields(line) for line in lines if " [STATS]" in line]


def test_every_n_processed(make_system: SystemFactory, log_dir: Path) -> None:
    clock = FakeClock()
    system = make_system("worker_open", clock=clock, stats_every_n=5)
    log = system.events
    for n in range(12):
        log.stats.incr("orders_opened")
        log.success("OPEN:SUCCESS", processing_time_ms=float(n), order_id=n)
    log.parked("OPEN:PARKED", order_id=99)  # not processed: no line by itself
    system.flush()
    lines = _stats_lines(log_dir, "worker_open.log")
    assert [line["processed"] for line in lines] == ["5", "10"]
    assert lines[1]["success"] == "10"
    assert lines[1]["orders_opened"] == "10"
    assert lines[0]["component"] == "worker_open"
    for key in (
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "rate_per_min",
        "uptime_s",
        "log_lines",
        "log_bytes",
        "log_rotations",
        "log_dropped",
        "log_write_failures",
    ):
        assert key in lines[0]


def test_every_interval_with_a_fake_clock(make_system: SystemFactory, log_dir: Path) -> None:
    clock = FakeClock()
    system = make_system("dispatcher", clock=clock, stats_every_n=1000, stats_interval_s=300)
    log = system.events
    log.success("DISPATCH:ROUTED", processing_time_ms=1.0)
    log.tick()
    clock.advance(299)
    log.tick()
    system.flush()
    assert _stats_lines(log_dir, "dispatcher.log") == []
    clock.advance(1)
    log.tick()
    system.flush()
    (line,) = _stats_lines(log_dir, "dispatcher.log")
    assert line["processed"] == "1"
    assert line["uptime_s"] == "300.0"
    assert "final" not in line


def test_final_line_at_shutdown(make_system: SystemFactory, log_dir: Path) -> None:
    system = make_system("worker_reject", clock=FakeClock())
    system.events.skipped("REJECT:SKIP:DUPLICATE", order_id=1)
    system.events.dead_lettered("REJECT:DLQ", reason="precondition_timeout", order_id=2)
    system.events.failure("REJECT:ERROR", exc=ValueError("x"), order_id=3)
    system.close()
    (line,) = _stats_lines(log_dir, "worker_reject.log")
    assert line["final"] == "true"
    assert (line["processed"], line["skipped"], line["dead_lettered"], line["failure"]) == (
        "3",
        "1",
        "1",
        "1",
    )
    assert line["dlq.precondition_timeout"] == "1"
    assert int(line["log_lines"]) >= 3


def test_percentiles_and_snapshot() -> None:
    clock = FakeClock()
    stats = ComponentStats("worker_open", clock=clock, every_n=1000, window=128)
    for n in range(1, 101):
        stats.record("success", float(n))
    stats.record("retried")
    clock.advance(60)
    snap = stats.snapshot()
    assert (snap["p50_ms"], snap["p95_ms"], snap["p99_ms"]) == (50.0, 95.0, 99.0)
    assert snap["processed"] == 100 and snap["retried"] == 1
    assert snap["rate_per_min"] == 100.0
    with pytest.raises(ValueError, match="unknown outcome"):
        stats.record("exploded")


def test_window_is_bounded() -> None:
    stats = ComponentStats("worker_open", window=16)
    for n in range(1000):
        stats.observe(float(n))
    p50, _, p99 = stats.percentiles()
    assert 984 <= p50 <= 999 and p99 == 999.0
