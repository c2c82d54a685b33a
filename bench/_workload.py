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
too (``place_orders``, ``publish_fills``, ``wait_for``, ``EmbeddedPipeline.drain``, and
settings passed only where that tree's ``Settings`` has the field), rather than in
``execflow.apps.bench``, whose ``embedded_pass`` sets the pipeline up the same way but
times it: a function added there would be missing from the baseline's tree.

Under valgrind (~50x slower) anything that fires by the wall clock fires more often, and
the count moves with the machine's load. With ``batch`` the pass runs without such timers
in the measured work: the db writer writes full batches of ``batch`` only (its timeout out
of reach, so the events of a pass must be a multiple of it), the log writer thread wakes
on a buffer's worth of lines rather than every 0.2 s (or 10 s, the most ``Settings``
allow), no STATS line is owed by time, and the wait for the fills is the in-memory bus's
exact join, not a 50 ms poll.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

_OUT_OF_REACH_S = 86_400.0
"""A timer interval no counted pass reaches, however slow valgrind runs it."""


def _steady(fields: dict[str, Any], batch: int) -> dict[str, Any]:
    """The settings that take the wall clock out of a pass, those of them ``fields`` has."""
    wanted: dict[str, Any] = {
        "db_batch_size": batch,
        "db_batch_timeout_s": _OUT_OF_REACH_S,
        "log_flush_interval_s": 10.0,  # the largest allowed
        "stats_interval_s": _OUT_OF_REACH_S,
    }
    return {name: value for name, value in wanted.items() if name in fields}


async def fill_pass(
    workdir: Path, orders: int, timeout_s: float, fill: bool = True, batch: int | None = None
) -> None:
    """Place ``orders`` orders, then (``fill``) publish one fill report per order and wait
    until each is applied; then until the pipeline is idle (every DB event written).

    With ``fill=False`` the orders are only placed: the difference between the two counts
    is what the reports cost. With ``batch`` (which must divide ``orders``: a pass writes
    one DB event per placed order and one per fill) no wall-clock timer shapes the work
    (the module's doc)."""
    from execflow.apps.bench import place_orders, publish_fills, wait_for
    from execflow.logs import setup_logging
    from execflow.pipeline.embedded import EmbeddedPipeline
    from execflow.pipeline.services import open_services
    from execflow.settings import Settings

    steady = {} if batch is None else _steady(dict(Settings.model_fields), batch)
    settings = Settings(
        log_dir=workdir / "logs",
        log_level="INFO",
        database_url=f"sqlite+aiosqlite:///{workdir / 'execflow.db'}",
        **steady,
    )
    logs = await asyncio.to_thread(setup_logging, settings, "simulator", bridge=False)
    writer: Any = getattr(logs, "writer", None)
    if batch is not None and hasattr(writer, "flush_interval_s"):
        # Settings allow 10 s at most, and each timed wake also checks every log file's
        # path: a pass that runs longer under load would pay more of them. Woken by a
        # buffer's worth of lines (and the close) only, the wakes follow the lines.
        writer.flush_interval_s = _OUT_OF_REACH_S
    try:
        async with open_services(settings, logs) as services:
            placed = await place_orders(services, orders)
            if batch is not None and len(placed) != orders:
                # the db writer would wait for the rest of a batch that never fills
                raise SystemExit(f"{orders - len(placed)} of {orders} orders refused")
            pipeline = EmbeddedPipeline(services, rebuild=False)
            await pipeline.start()
            try:
                if fill:
                    await publish_fills(services.bus, placed, None, "instr")
                    log = logs.logger("worker_open")

                    async def opened() -> bool:
                        return log.stats.count("success") >= len(placed)

                    # the in-memory bus's join is exact: once idle, every fill is applied
                    # and the poll below returns at its first look
                    await pipeline.drain(timeout_s=timeout_s)
                    await wait_for(opened, timeout_s)
                await pipeline.drain(timeout_s=timeout_s)
            finally:
                await pipeline.stop()
    finally:
        await asyncio.to_thread(logs.close)
