"""``execflow reconcile``: the state store against the database's order events, and stuck orders.

Two sections: the differences (exit 1 when there is any), then the stuck orders
(``execflow orders stuck``). A stuck order alone does not fail reconciliation: the
state and the database agree about it (both say it waits), which is what this command
checks; that it waits too long is an operations matter, alerted on by the
``execflow_stuck_orders`` metric and settled with ``execflow order resolve``.

Logs to ``supervisor.log`` (the operator commands' file): ``RECONCILE:DONE`` with the
counts, or ``PROCESS:FAILED`` when a server cannot be reached.
"""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from execflow.backends.factory import make_database, make_state_store
from execflow.cli.context import settings_from
from execflow.cli.demo import render_reconciliation
from execflow.cli.failures import process_logging
from execflow.cli.stuck import render_stuck
from execflow.clock import SystemClock
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
) -> None:
    """Recompute every account from the database's events; exit 1 on any difference.

    Stuck orders are listed after the differences; alone they do not fail the check.
    """
    settings = settings_from(ctx)
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
