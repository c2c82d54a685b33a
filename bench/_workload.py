"""The fill-report workload the instruction counts share (not a benchmark of its own).

``bench/instructions_per_report.py`` and ``bench/fix_bench.py --instructions`` count, under
cachegrind, the embedded pipeline (in-memory bus and state, SQLite, full logging) while
EURUSD market orders are placed through the intake and then one fill report per order is
published to ``reports`` by the bench (no LP), until every fill is applied and the db
writer has drained. Both scripts import this module by name: a script run as
``python bench/<script>.py`` has ``bench/`` first on ``sys.path`` (and mypy, with
``files = bench``, reads it as the top-level module ``_workload``).

The execflow imports are inside the function: ``instructions_per_report.py --baseline-src``
runs the workload with another tree's ``execflow`` on ``PYTHONPATH``, and its outer
process imports none. For the same reason it is written here, on what older trees have
too (``place_orders``, ``publish_fills``, ``wait_for``), rather than in
``execflow.apps.bench``, whose ``embedded_pass`` sets the pipeline up the same way but
times it: a function added there would be missing from the baseline's tree.
"""

from __future__ import annotations

import asyncio
from pathlib import Path


async def fill_pass(workdir: Path, orders: int, timeout_s: float, fill: bool = True) -> None:
    """Place ``orders`` orders, then (``fill``) publish one fill report per order and wait
    until each is applied; then until the pipeline is idle (every DB event written).

    With ``fill=False`` the orders are only placed: the difference between the two counts
    is what the reports cost."""
    from execflow.apps.bench import place_orders, publish_fills, wait_for
    from execflow.logs import setup_logging
    from execflow.pipeline.embedded import EmbeddedPipeline
    from execflow.pipeline.services import open_services
    from execflow.settings import Settings

    settings = Settings(
        log_dir=workdir / "logs",
        log_level="INFO",
        database_url=f"sqlite+aiosqlite:///{workdir / 'execflow.db'}",
    )
    logs = await asyncio.to_thread(setup_logging, settings, "simulator", bridge=False)
    try:
        async with open_services(settings, logs) as services:
            placed = await place_orders(services, orders)
            pipeline = EmbeddedPipeline(services, rebuild=False)
            await pipeline.start()
            try:
                if fill:
                    await publish_fills(services.bus, placed, None, "instr")
                    log = logs.logger("worker_open")

                    async def opened() -> bool:
                        return log.stats.count("success") >= len(placed)

                    await wait_for(opened, timeout_s)
                await pipeline.drain(timeout_s=timeout_s)
            finally:
                await pipeline.stop()
    finally:
        await asyncio.to_thread(logs.close)
