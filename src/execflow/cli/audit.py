"""``execflow audit verify``: walk the database's audit chains, name each first broken link.

Exit codes: 0 every chain verifies, 1 a chain is broken, 2 invalid settings,
3 the database cannot be reached or read (one line on stderr, no traceback, and
``PROCESS:FAILED`` in supervisor.log and provider_errors.log: ``execflow.cli.failures``).
Only the database is opened: a check of the books must not need the broker or Redis.
"""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from execflow.backends.factory import make_database
from execflow.cli.context import settings_from
from execflow.cli.failures import EXIT_CHECK_FAILED, EXIT_UNREACHABLE, process_logging
from execflow.pipeline.audit import AuditReport, verify_chains
from execflow.safetext import json_text, markup
from execflow.settings import Settings

__all__ = ["EXIT_BROKEN", "EXIT_UNREACHABLE", "audit_app"]

EXIT_BROKEN = EXIT_CHECK_FAILED
_COMPONENT = "supervisor"

audit_app = typer.Typer(
    help="Check the tamper-evident audit chains of the order events.", no_args_is_help=True
)


async def _verify(settings: Settings, account_id: str | None) -> AuditReport:
    database = make_database(settings)
    await database.connect()
    try:
        return await verify_chains(database, account_id)
    finally:
        await database.close()


@audit_app.command("verify")
def verify_command(
    ctx: typer.Context,
    account: str | None = typer.Option(None, "--account", "-a", help="Only this account."),
    as_json: bool = typer.Option(False, "--json", help="The report as one JSON document."),
) -> None:
    """Recompute every account's hash chain; exit 1 and name the first broken link if any."""
    settings = settings_from(ctx)
    with process_logging(settings, _COMPONENT) as logs:
        report = asyncio.run(_verify(settings, account))
        log = logs.logger(_COMPONENT)
        log.info(
            "AUDIT:VERIFIED",
            accounts=report.accounts,
            events=report.events,
            broken=len(report.broken),
        )
        # tampered books are an error an operator must see in provider_errors.log too
        for broken in report.broken:
            log.error(
                "AUDIT:BROKEN",
                user=broken.account_id,
                order_id=broken.order_id,
                event_id=broken.event_id,
                problem=broken.problem.value,
                position=broken.position,
                expected=broken.expected,
                found=broken.found,
                detail=broken.detail,
            )
    if as_json:
        typer.echo(json_text(report.to_dict()))
    else:
        _render(Console(soft_wrap=True), report)
    if not report.ok:
        raise typer.Exit(EXIT_BROKEN)


def _render(console: Console, report: AuditReport) -> None:
    counts = f"{report.accounts} account(s), {report.events} event(s)"
    if report.ok:
        console.print(f"audit chain: [green]clean[/] ({counts})")
        return
    for broken in report.broken:
        console.print(
            f"[bold red]BROKEN[/] account={markup(broken.account_id)} "
            f"position={broken.position} problem={broken.problem.value} "
            f"event_id={markup(broken.event_id or '-')} order_id={markup(broken.order_id or '-')} "
            f"expected={markup(broken.expected)} found={markup(broken.found or '-')} "
            f"({markup(broken.detail)})"
        )
    console.print(
        f"audit chain: [bold red]{len(report.broken)} broken[/] of {report.accounts} "
        f"account(s) ({report.events} event(s) verified before the breaks)"
    )
