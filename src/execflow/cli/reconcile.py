"""``execflow reconcile``: the state store against the database's order events."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from execflow.backends.factory import make_database, make_state_store
from execflow.cli.context import settings_from
from execflow.cli.demo import render_reconciliation
from execflow.pipeline.reconcile import ReconcileReport, reconcile
from execflow.settings import Settings

__all__ = ["reconcile_command"]


async def _reconcile(settings: Settings) -> ReconcileReport:
    database = make_database(settings)
    state = make_state_store(settings)
    await database.connect()
    try:
        await state.connect()
        try:
            return await reconcile(database, state)
        finally:
            await state.close()
    finally:
        await database.close()


def reconcile_command(
    ctx: typer.Context,
    limit: int = typer.Option(50, min=1, help="Differences to print at most."),
) -> None:
    """Recompute every account from the database's events; exit 1 on any difference."""
    settings = settings_from(ctx)
    report = asyncio.run(_reconcile(settings))
    render_reconciliation(Console(), report, limit)
    if not report.ok:
        raise typer.Exit(1)
