"""``execflow order resolve``: settle a stuck order's request as the LP would have.

::

    execflow order resolve 3163458366000 --as rejected --reason "LP: never received"
    execflow order resolve 3163458366000 --as filled --price 1.08502 --reason "LP statement"
    execflow order resolve 3163458366000 --as cancelled --leg tp --reason "..." --operator alice

The same transition a report would run (``execflow.pipeline.resolve``): margin
released or booked, DB events written, each carrying the operator and the reason. The
operator defaults to the OS user running the command. Exit codes: 0 applied, 1 refused
(one line on stderr, nothing changed), 2 bad usage (including ``memory://`` backends:
a resolution must reach the deployment's shared state store and db writer).
"""

from __future__ import annotations

import os
import pwd
from decimal import Decimal, InvalidOperation

import typer
from rich.console import Console

from execflow.cli.context import settings_from
from execflow.cli.run import run_with_services
from execflow.domain.enums import LegKind
from execflow.domain.resolution import OperatorNote, Resolution
from execflow.pipeline.resolve import COMPONENT, Refused, Resolved, resolve_order
from execflow.pipeline.services import Services
from execflow.safetext import json_text, markup, safe_text

__all__ = ["os_user", "resolve_command"]


def os_user() -> str:
    """The name of the OS user running this process (its uid when it has none)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _price(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        price = Decimal(text)
    except InvalidOperation:
        raise typer.BadParameter(f"not a decimal: {safe_text(text)}") from None
    if not price.is_finite():
        raise typer.BadParameter(f"not a finite price: {safe_text(text)}")
    return price


def resolve_command(
    ctx: typer.Context,
    order_id: str = typer.Argument(..., help="The stuck order."),
    resolution: Resolution = typer.Option(
        ..., "--as", case_sensitive=False, help="What became of its unanswered request."
    ),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the log and the database)."),
    price: str | None = typer.Option(
        None, "--price", help="--as filled: the LP's average fill price (AvgPx, before spread)."
    ),
    operator: str | None = typer.Option(
        None, "--operator", help="Who resolves it (default: the OS user)."
    ),
    leg: LegKind | None = typer.Option(
        None, "--leg", case_sensitive=False, help="SL or TP: which leg's request, when both wait."
    ),
    exec_id: str | None = typer.Option(
        None, "--exec-id", help="Re-send the effects of a resolution whose publishing failed."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Answer a stuck order's request in the LP's place: cancelled, rejected or filled."""
    settings = settings_from(ctx)
    err = Console(stderr=True, soft_wrap=True)
    if settings.broker_url.startswith("memory://") or settings.state_url.startswith("memory://"):
        err.print(
            "[red]refused:[/] resolve needs the deployment's broker and state store "
            "(memory:// backends live inside one process; set EXECFLOW_BROKER_URL / STATE_URL)"
        )
        raise typer.Exit(2)
    if not reason.strip():
        raise typer.BadParameter("--reason must say why")
    who = (operator or os_user()).strip()
    if not who:
        raise typer.BadParameter("--operator must name someone")
    note = OperatorNote(who, reason, resolution)
    fill_price = _price(price)

    async def body(services: Services) -> Resolved | Refused:
        return await resolve_order(
            services, order_id, note, price=fill_price, leg=leg, exec_id=exec_id
        )

    result = run_with_services(settings, COMPONENT, body)
    if isinstance(result, Refused):
        _print_refused(err, result, as_json)
        raise typer.Exit(1)
    _print_resolved(result, note, as_json)


def _print_refused(err: Console, refused: Refused, as_json: bool) -> None:
    if as_json:
        document = {"resolved": False, "order_id": refused.order_id, "reason": refused.reason}
        if refused.detail:
            document["detail"] = refused.detail
        if refused.status:
            document["status"] = refused.status
        typer.echo(json_text(document))
        return
    status = f" status={refused.status}" if refused.status else ""
    detail = f" ({markup(refused.detail)})" if refused.detail else ""
    err.print(
        f"[red]refused:[/] {markup(refused.reason)}{detail} "
        f"order_id={markup(refused.order_id)}{status}"
    )


def _print_resolved(result: Resolved, note: OperatorNote, as_json: bool) -> None:
    if as_json:
        typer.echo(
            json_text(
                {
                    "resolved": True,
                    "order_id": result.order_id,
                    "as": note.resolution.value,
                    "operator": note.operator,
                    "reason": note.reason,
                    "exec_id": result.exec_id,
                    "worker": result.worker,
                    "kind": result.kind,
                    "status_before": result.status_before,
                    "status": result.status,
                    "republished": result.republished,
                    "trace_id": result.trace_id,
                }
            )
        )
        return
    if result.republished:
        Console(soft_wrap=True).print(
            f"[yellow]re-sent[/] the effects of exec_id={markup(result.exec_id)} "
            f"order_id={markup(result.order_id)} status={result.status}"
        )
        return
    Console(soft_wrap=True).print(
        f"[green]resolved[/] order_id={markup(result.order_id)} as {note.resolution.value} "
        f"by {markup(note.operator)}: {result.kind} -> worker {result.worker}, "
        f"{result.status_before} -> {result.status} exec_id={markup(result.exec_id)} "
        f"trace_id={markup(result.trace_id)}"
    )
