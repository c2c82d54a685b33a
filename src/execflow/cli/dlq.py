"""``execflow dlq``: list and replay dead letters (see ``execflow.pipeline.dlq``).

Both commands first move whatever waits in the DLQ into the ``dead_letters`` table,
so nothing is listed from a queue that a crash could disturb.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from execflow.cli.context import settings_from
from execflow.cli.run import run_with_services
from execflow.pipeline.dlq import (
    COMPONENT,
    DeadLetterView,
    ReplayResult,
    list_dead_letters,
    replay_dead_letters,
)
from execflow.pipeline.services import Services
from execflow.safetext import cell, json_text

__all__ = ["dlq_app"]

dlq_app = typer.Typer(help="List and replay dead-lettered messages.", no_args_is_help=True)

_REASON = typer.Option(None, "--reason", "-r", help="Only this reason (e.g. unknown_lifecycle_id).")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _table(views: list[DeadLetterView], title: str) -> Table:
    table = Table(
        "id", "reason", "age", "order", "trace_id", "queue", "attempts", "error", title=title
    )
    for view in views:
        # reason, order, trace id, queue and error come from the message or the LP
        table.add_row(
            str(view.id),
            cell(view.reason),
            _age(view.age_s),
            cell(view.order or "-"),
            cell(view.trace_id or "-"),
            cell(view.queue),
            str(view.attempts),
            cell((view.error or "")[:60]),
        )
    return table


@dlq_app.command("list")
def list_command(
    ctx: typer.Context,
    reason: str | None = _REASON,
    include_replayed: bool = typer.Option(False, "--all", help="Include replayed ones."),
    limit: int = typer.Option(100, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Dead letters, oldest first: reason, age, order, trace_id, original queue."""
    settings = settings_from(ctx)

    async def body(services: Services) -> list[DeadLetterView]:
        log = services.logger(COMPONENT)
        return await list_dead_letters(
            services.bus,
            services.database,
            log,
            services.clock.now(),
            reason=reason,
            include_replayed=include_replayed,
            limit=limit,
        )

    views = run_with_services(settings, COMPONENT, body)
    if as_json:
        for view in views:
            typer.echo(json_text(view.to_dict()))
        return
    Console().print(_table(views, f"dead letters ({len(views)})"))


@dlq_app.command("replay")
def replay_command(
    ctx: typer.Context,
    reason: str | None = _REASON,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be replayed."),
    limit: int = typer.Option(1000, "--limit", min=1),
) -> None:
    """Re-publish dead letters to their original queues and mark them replayed."""
    settings = settings_from(ctx)

    async def body(services: Services) -> ReplayResult:
        log = services.logger(COMPONENT)
        return await replay_dead_letters(
            services.bus,
            services.database,
            log,
            services.clock.now(),
            reason=reason,
            dry_run=dry_run,
            limit=limit,
        )

    result = run_with_services(settings, COMPONENT, body)
    console = Console()
    verb = "would replay" if result.dry_run else "replayed"
    console.print(_table(list(result.selected), f"{verb} {len(result.selected)}"))
    console.print(f"{verb}: {len(result.selected) if result.dry_run else result.replayed}")
