"""``execflow reconcile``: the state store against the database's order events, and stuck orders.

Two sections: the differences (exit 1 when there is any), then the stuck orders
(``execflow orders stuck``). A stuck order alone does not fail reconciliation: the
state and the database agree about it (both say it waits), which is what this command
checks; that it waits too long is an operations matter, alerted on by the
``execflow_stuck_orders`` metric and settled with ``execflow order resolve``.

Logs to ``supervisor.log`` (the operator commands' file): ``RECONCILE:DONE`` with the
counts, or ``PROCESS:FAILED`` when a server cannot be reached.

``--every S`` keeps running (``run all`` starts it so) and reconciles every ``S`` seconds
until SIGINT / SIGTERM; each result is a metric (``execflow_reconcile_mismatches``,
``execflow_reconcile_last_success_timestamp_seconds``, ``execflow_reconcile_failures``)
for the reconciliation alerts, and a run that cannot reach a server is logged
``RECONCILE:FAILED`` and tried again at the next tick.
"""

from __future__ import annotations

import asyncio
import signal

import typer
from rich.console import Console

from execflow.backends.factory import make_database, make_state_store
from execflow.cli.context import settings_from
from execflow.cli.demo import render_reconciliation
from execflow.cli.failures import process_logging
from execflow.cli.stuck import render_stuck
from execflow.clock import SystemClock
from execflow.errors import ExecflowError
from execflow.logs.events import EventLogger
from execflow.metrics import Metrics, MetricsServer
from execflow.pipeline.reconcile import ReconcileReport, reconcile
from execflow.pipeline.stuck import StuckOrder, find_stuck
from execflow.settings import Settings

__all__ = ["reconcile_command"]

_COMPONENT = "supervisor"


async def _reconcile(settings: Settings) -> tuple[ReconcileReport, list[StuckOrder]]:
    database = make_database(settings)
    state = make_state_store(settings)
    await database.connect()
    try:
        await state.connect()
        try:
            report = await reconcile(database, state)
            stuck = await find_stuck(state, SystemClock().now(), settings.stuck_after_s)
            return report, stuck
        finally:
            await state.close()
    finally:
        await database.close()


def reconcile_command(
    ctx: typer.Context,
    limit: int = typer.Option(50, min=1, help="Differences to print at most."),
    every: float | None = typer.Option(
        None,
        "--every",
        min=1,
        help="Keep running: reconcile every S seconds, export the result as metrics.",
    ),
) -> None:
    """Recompute every account from the database's events; exit 1 on any difference.

    Stuck orders are listed after the differences; alone they do not fail the check.
    """
    settings = settings_from(ctx)
    if every is not None:
        _reconcile_every(settings, every)
        return
    with process_logging(settings, _COMPONENT) as logs:
        report, stuck = asyncio.run(_reconcile(settings))
        logs.logger(_COMPONENT).info(
            "RECONCILE:DONE",
            accounts=report.accounts,
            orders=report.orders,
            events=report.events,
            differences=len(report.differences),
            stuck=len(stuck),
        )
    console = Console()
    render_reconciliation(console, report, limit)
    render_stuck(console, stuck, settings.stuck_after_s)
    if not report.ok:
        raise typer.Exit(1)


def _reconcile_every(settings: Settings, every_s: float) -> None:
    """Reconcile every ``every_s`` seconds until SIGINT / SIGTERM, results as metrics."""
    metrics: Metrics | None = None
    server: MetricsServer | None = None
    if settings.metrics_multiproc_dir is not None:
        metrics = Metrics("reconciler", multiprocess_dir=settings.metrics_multiproc_dir)
    elif settings.metrics_port is not None:
        metrics = Metrics("reconciler")
        server = MetricsServer(metrics, settings.metrics_host, settings.metrics_port).start()
    try:
        with process_logging(settings, _COMPONENT) as logs:
            log = logs.logger(_COMPONENT)
            log.info("RECONCILE:EVERY", every_s=every_s)
            stopped_by = asyncio.run(_loop(settings, every_s, log, metrics))
            log.info("RECONCILE:STOPPED", signal=stopped_by)
    finally:
        if server is not None:
            server.stop()


async def _loop(
    settings: Settings, every_s: float, log: EventLogger, metrics: Metrics | None
) -> str:
    stop = asyncio.Event()
    received = {"signal": "none"}
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        received["signal"] = sig.name
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        while not stop.is_set():
            await _once(settings, log, metrics)
            try:
                await asyncio.wait_for(stop.wait(), every_s)
            except TimeoutError:
                continue
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return received["signal"]


async def _once(settings: Settings, log: EventLogger, metrics: Metrics | None) -> None:
    """One reconciliation: its result logged and counted; a server away is a failed run."""
    try:
        report, stuck = await _reconcile(settings)
    except ExecflowError as exc:
        if metrics is not None:
            metrics.reconcile_failed()
        log.warning("RECONCILE:FAILED", error=exc)
        return
    if metrics is not None:
        metrics.reconciled(len(report.differences))
    done = log.info if report.ok else log.warning
    done(
        "RECONCILE:DONE",
        accounts=report.accounts,
        orders=report.orders,
        events=report.events,
        differences=len(report.differences),
        stuck=len(stuck),
    )
