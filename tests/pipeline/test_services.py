"""``open_services``: what it sets up for the process besides the ports."""

from __future__ import annotations

import gc
from pathlib import Path

from execflow.logs import setup_logging
from execflow.metrics import Metrics
from execflow.pipeline.services import open_services
from execflow.settings import Settings


async def test_opening_the_services_sets_the_gc_thresholds(tmp_path: Path) -> None:
    """The process-wide collector thresholds come from settings (see services.py)."""
    before = gc.get_threshold()
    settings = Settings(
        log_dir=tmp_path / "logs",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        gc_thresholds=(12_345, 11, 12),
    )
    logs = setup_logging(settings, "intake", bridge=False)
    try:
        async with open_services(settings, logs):
            assert gc.get_threshold() == (12_345, 11, 12)
    finally:
        gc.set_threshold(*before)
        logs.close()


async def test_a_store_without_replicas_adds_no_replication_metrics(tmp_path: Path) -> None:
    """Only a Redis Cluster store's replication is exported: none, not 0, for the others."""
    before = gc.get_threshold()
    settings = Settings(
        log_dir=tmp_path / "logs",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        state_url="memory://",
    )
    logs = setup_logging(settings, "worker_open", bridge=False)
    metrics = Metrics("worker_open")
    try:
        async with open_services(settings, logs, metrics=metrics):
            exposed = metrics.exposition().decode()
            assert "execflow_log_lines_total" in exposed  # the logging layer's, watched
            assert "execflow_state_" not in exposed
            assert not {n for n in metrics.names() if n.startswith("execflow_state_")}
    finally:
        gc.set_threshold(*before)
        logs.close()
