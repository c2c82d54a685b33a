"""``execflow state rebuild`` and ``execflow seed FILE``: fill the state store.

``state rebuild`` writes whatever the state store is missing from the database (orders,
accounts, lifecycle index, exec_id ledgers, outboxes; instruments and prices from
``settings.seed_file``). ``seed`` loads a seed file (TOML or JSON) into the state store
and the accounts table; existing accounts are never overwritten.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from execflow.cli.context import settings_from
from execflow.cli.run import run_with_services
from execflow.pipeline.rebuild import RebuildReport, rebuild_state
from execflow.pipeline.seed import SeedError, SeedReport, apply_seed, load_seed
from execflow.pipeline.services import Services
from execflow.safetext import cell, markup

__all__ = ["seed_app", "state_app"]

_COMPONENT = "supervisor"

state_app = typer.Typer(help="Maintain the state store (Redis or memory).", no_args_is_help=True)
seed_app = typer.Typer(help="Load reference data from a seed file.")


@state_app.command("rebuild")
def rebuild_command(
    ctx: typer.Context,
    flush: bool = typer.Option(
        False, "--flush", help="Forget the whole state store first (stop the pipeline before)."
    ),
) -> None:
    """Rebuild the state store from the database (only what is missing, unless --flush)."""
    settings = settings_from(ctx)

    async def body(services: Services) -> RebuildReport:
        log = services.logger(_COMPONENT)
        if flush:
            await services.state.flush_all()
            log.warning("STATE:FLUSHED", by="cli")
        return await rebuild_state(services.state, services.database, settings.seed_file, log)

    report = run_with_services(settings, _COMPONENT, body)
    table = Table("what", "restored", title="state rebuilt from the database")
    for name, count in report.fields().items():
        table.add_row(cell(name), str(count))
    Console().print(table)


@seed_app.callback(invoke_without_command=True)
def seed_command(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="seed.toml or seed.json"),
) -> None:
    """Load accounts, instrument configs and prices from FILE (see examples/seed.toml)."""
    settings = settings_from(ctx)
    try:
        seed = load_seed(file)
    except SeedError as exc:
        Console(stderr=True).print(f"[bold red]seed error:[/] {markup(exc.message)}")
        raise typer.Exit(code=2) from None

    async def body(services: Services) -> SeedReport:
        report = await apply_seed(seed, services.state, services.database)
        services.logger(_COMPONENT).info(
            "SEED:LOADED",
            path=str(file),
            accounts_created=len(report.accounts_created),
            accounts_kept=len(report.accounts_kept),
            accounts_recached=len(report.accounts_recached),
            instruments=report.instruments,
            prices=report.prices,
        )
        return report

    report = run_with_services(settings, _COMPONENT, body)
    table = Table("account", "outcome", title=f"seeded from {markup(file)}")
    for outcome, ids in (
        ("created", report.accounts_created),
        ("kept (already in the state store)", report.accounts_kept),
        ("re-cached from the database", report.accounts_recached),
    ):
        for account_id in ids:
            table.add_row(cell(account_id), outcome)
    console = Console()
    console.print(table)
    console.print(f"instruments: {report.instruments}  prices: {report.prices}")
