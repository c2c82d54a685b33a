"""``execflow orders stuck``: orders waiting for an LP answer that never came.

::

    execflow orders stuck                     # silent for EXECFLOW_STUCK_AFTER_S or more
    execflow orders stuck --older-than 60 --json

The listing reads the state store (``execflow.pipeline.stuck`` says why). A
``memory://`` store starts empty in this process, so it is rebuilt from the database
first: with the embedded deployment's SQLite file the command lists what the database
knows. Every value from outside is shown through ``execflow.safetext``. Exit code 0
whether or not orders are stuck (the metric and its alert are the alarm); resolve one
with ``execflow order resolve``.
"""

from __future__ import annotations

from collections.abc import Sequence

import typer
from rich.console import Console
from rich.table import Table

from execflow.cli.context import settings_from
from execflow.cli.run import run_with_services
from execflow.pipeline.rebuild import rebuild_if_needed
from execflow.pipeline.services import Services
from execflow.pipeline.stuck import StuckOrder, find_stuck
from execflow.safetext import cell, json_text

__all__ = ["list_app", "render_stuck", "stuck_table"]

COMPONENT = "supervisor"

list_app = typer.Typer(help="Read-side views of orders (list, stuck orders).", no_args_is_help=True)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def stuck_table(stuck: Sequence[StuckOrder], title: str) -> Table:
    """One row per stuck order: what it waits for and how long it has been silent."""
    table = Table(
        "order", "account", "symbol", "side", "status", "waiting for", "silent", "reserved",
        "lifecycle ids", title=title,
    )  # fmt: skip
    for item in stuck:
        table.add_row(
            cell(item.order_id),
            cell(item.account_id),
            cell(item.symbol),
            item.side,
            item.status,
            ", ".join(item.waiting_for),
            _age(item.silent_s),
            str(item.reserved_margin),
            cell(", ".join(item.lifecycle_ids)),
        )
    return table


def render_stuck(console: Console, stuck: Sequence[StuckOrder], after_s: float) -> None:
    """The stuck-orders section (``orders stuck``, ``reconcile``)."""
    if not stuck:
        console.print(f"[bold green]stuck orders: none[/] (silent for {after_s:g} s or more)")
        return
    console.print(
        f"[bold yellow]stuck orders: {len(stuck)}[/] (silent for {after_s:g} s or more; "
        "resolve with execflow order resolve ORDER_ID --as cancelled|rejected|filled)"
    )
    console.print(stuck_table(stuck, f"stuck orders ({len(stuck)})"))


@list_app.command("stuck")
def stuck_command(
    ctx: typer.Context,
    older_than: float | None = typer.Option(
        None, "--older-than", min=0, help="Seconds of silence (default EXECFLOW_STUCK_AFTER_S)."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Orders whose request to the LP is unanswered and that have been silent too long."""
    settings = settings_from(ctx)
    after_s = settings.stuck_after_s if older_than is None else older_than

    async def body(services: Services) -> list[StuckOrder]:
        log = services.logger(COMPONENT)
        if settings.state_url.startswith("memory://"):
            await rebuild_if_needed(services.state, services.database, settings.seed_file, log)
        found = await find_stuck(services.state, services.clock.now(), after_s, log)
        log.info("STUCK:LISTED", stuck_orders=len(found), stuck_after_s=after_s)
        return found

    stuck = run_with_services(settings, COMPONENT, body)
    if as_json:
        for item in stuck:
            typer.echo(json_text(item.to_dict()))
        return
    render_stuck(Console(), stuck, after_s)
