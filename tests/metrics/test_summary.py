"""Per-component figures read back from a registry: outcomes, success rate, times, DLQ."""

from __future__ import annotations

import pytest

from execflow.metrics import Metrics
from execflow.metrics.summary import read_figures


def test_outcomes_times_and_dead_letters_per_component() -> None:
    metrics = Metrics("test")
    for _ in range(3):
        metrics.worker_outcome("open", "success", seconds=0.004)  # bucket le 5 ms
    metrics.worker_outcome("open", "failure", seconds=0.2)  # bucket le 250 ms
    metrics.observe_processing("dispatcher", 0.0008)  # bucket le 1 ms
    metrics.dead_lettered("unknown_lifecycle_id")
    metrics.dead_lettered("unknown_lifecycle_id")
    metrics.dead_lettered("report_mismatch")

    figures = read_figures(metrics.registry)

    worker = figures.components["open"]
    assert worker.outcomes == {"failure": 1, "success": 3}
    assert worker.handled == 4 and worker.success_rate == 0.75
    assert worker.processed == 4
    assert worker.mean_ms == pytest.approx((3 * 4 + 200) / 4)
    # the upper bound of the bucket holding the rank: 2 of 4 -> 5 ms, 3.8 and 3.96 -> 250 ms
    assert worker.percentiles_ms == {"p50_ms": 5.0, "p95_ms": 250.0, "p99_ms": 250.0}
    dispatcher = figures.components["dispatcher"]
    assert dispatcher.outcomes == {} and dispatcher.success_rate is None
    assert dispatcher.processed == 1 and dispatcher.percentiles_ms["p99_ms"] == 1.0
    assert figures.dead_lettered == {"report_mismatch": 1, "unknown_lifecycle_id": 2}


def test_an_empty_registry_has_no_components() -> None:
    figures = read_figures(Metrics("idle").registry)
    assert figures.components == {} and figures.dead_lettered == {}
