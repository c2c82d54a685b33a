"""``execflow order``: place, change and close orders through the intake (configured backends).

::

    execflow order open live:6 EURUSD BUY 0.10 --sl 1.08000 --tp 1.09000
    execflow order pending live:6 EURUSD BUY_LIMIT 0.10 1.08000
    execflow order modify 3163458366000 1.08100
    execflow order cancel 3163458366000
    execflow order close 3163458366000
    execflow order sl 3163458366000 1.08200      (--cancel to remove it)
    execflow order tp 3163458366000 1.09500      (--cancel to remove it)

The exit code is 0 when the request was sent to the LP, 1 when it was refused locally.
With ``memory://`` backends the request lives and dies with this process: use them
against RabbitMQ + Redis + PostgreSQL (``execflow run ...``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import typer
from rich.console import Console

from execflow.cli.context import settings_from
from execflow.cli.run import run_with_services
from execflow.pipeline.intake import COMPONENT, IntakeResult, OrderIntake
from execflow.pipeline.services import Services
from execflow.safetext import json_text, markup, safe_text

__all__ = ["orders_app"]

orders_app = typer.Typer(
    help="Place, modify, cancel and close orders (the trading side).", no_args_is_help=True
)

_JSON = typer.Option(False, "--json", help="Print the result as JSON.")
_SL = typer.Option(None, "--sl", help="Stop-loss level (client price).")
_TP = typer.Option(None, "--tp", help="Take-profit level (client price).")
_CANCEL = typer.Option(False, "--cancel", help="Cancel the live leg instead of placing one.")


def _run(
    ctx: typer.Context, as_json: bool, action: Callable[[OrderIntake], Awaitable[IntakeResult]]
) -> None:
    settings = settings_from(ctx)

    async def body(services: Services) -> IntakeResult:
        intake = OrderIntake(services)
        try:
            return await action(intake)
        finally:
            await intake.shutdown()  # a send deferred by an outage goes out before exiting

    try:
        result = run_with_services(settings, COMPONENT, body)
    except (ValueError, ArithmeticError) as exc:
        # a side, order type or number that does not parse: nothing was sent
        raise typer.BadParameter(safe_text(str(exc) or type(exc).__name__)) from None
    if settings.broker_url.startswith("memory://"):
        # after the result, not before: a command that fails says so in one line
        Console(stderr=True).print(
            "[yellow]note:[/] memory:// backends: nothing outlives this command "
            "(set EXECFLOW_BROKER_URL / STATE_URL / DATABASE_URL)"
        )
    _print(result, as_json)
    raise typer.Exit(code=0 if result.accepted else 1)


def _print(result: IntakeResult, as_json: bool) -> None:
    shown = {
        "action": result.action,
        "accepted": result.accepted,
        "order_id": result.order_id,
        "status": result.status,
        "lifecycle_id": result.lifecycle_id,
        "reason": result.reason,
        "detail": result.detail or None,
        "trace_id": result.trace_id,
    }
    if as_json:
        typer.echo(json_text({k: v for k, v in shown.items() if v is not None}))
        return
    console = Console()
    if result.accepted:
        console.print(
            f"[green]sent[/] {markup(result.action)} order_id={markup(result.order_id)} "
            f"status={markup(result.status)} lifecycle_id={markup(result.lifecycle_id)} "
            f"trace_id={markup(result.trace_id)}"
        )
    else:
        # the order id, the reason and its detail may echo what the operator or the
        # database holds (an unknown order id, an account's group)
        detail = f" ({markup(result.detail)})" if result.detail else ""
        console.print(
            f"[red]refused[/] {markup(result.action)} order_id={markup(result.order_id)} "
            f"reason={markup(result.reason)}{detail}"
        )


@orders_app.command("open")
def open_market(
    ctx: typer.Context,
    account_id: str = typer.Argument(..., help="e.g. live:6"),
    symbol: str = typer.Argument(...),
    side: str = typer.Argument(..., help="BUY or SELL"),
    qty: str = typer.Argument(..., help="Lots, e.g. 0.10"),
    sl: str | None = _SL,
    tp: str | None = _TP,
    as_json: bool = _JSON,
) -> None:
    """Open a position at market."""
    _run(ctx, as_json, lambda i: i.open_market(account_id, symbol, side.upper(), qty, sl, tp))


@orders_app.command("pending")
def place_pending(
    ctx: typer.Context,
    account_id: str = typer.Argument(...),
    symbol: str = typer.Argument(...),
    order_type: str = typer.Argument(..., help="BUY_LIMIT, SELL_LIMIT, BUY_STOP, SELL_STOP"),
    qty: str = typer.Argument(...),
    price: str = typer.Argument(..., help="Client level"),
    sl: str | None = _SL,
    tp: str | None = _TP,
    as_json: bool = _JSON,
) -> None:
    """Place a limit or stop order."""
    _run(
        ctx,
        as_json,
        lambda i: i.place_pending(account_id, symbol, order_type.upper(), qty, price, sl, tp),
    )


@orders_app.command("modify")
def modify(
    ctx: typer.Context,
    order_id: str = typer.Argument(...),
    price: str = typer.Argument(...),
    as_json: bool = _JSON,
) -> None:
    """Move a resting pending order to a new price."""
    _run(ctx, as_json, lambda i: i.modify_pending(order_id, price))


@orders_app.command("cancel")
def cancel(ctx: typer.Context, order_id: str = typer.Argument(...), as_json: bool = _JSON) -> None:
    """Cancel a resting pending order."""
    _run(ctx, as_json, lambda i: i.cancel_pending(order_id))


@orders_app.command("close")
def close(ctx: typer.Context, order_id: str = typer.Argument(...), as_json: bool = _JSON) -> None:
    """Close an open position at market."""
    _run(ctx, as_json, lambda i: i.close(order_id))


@orders_app.command("sl")
def stop_loss(
    ctx: typer.Context,
    order_id: str = typer.Argument(...),
    price: str | None = typer.Argument(None),
    cancel_leg: bool = _CANCEL,
    as_json: bool = _JSON,
) -> None:
    """Place (PRICE) or cancel (--cancel) the stop loss of an open position."""
    _run(ctx, as_json, _leg(order_id, price, cancel_leg, sl=True))


@orders_app.command("tp")
def take_profit(
    ctx: typer.Context,
    order_id: str = typer.Argument(...),
    price: str | None = typer.Argument(None),
    cancel_leg: bool = _CANCEL,
    as_json: bool = _JSON,
) -> None:
    """Place (PRICE) or cancel (--cancel) the take profit of an open position."""
    _run(ctx, as_json, _leg(order_id, price, cancel_leg, sl=False))


def _leg(
    order_id: str, price: str | None, cancel_leg: bool, *, sl: bool
) -> Callable[[OrderIntake], Awaitable[IntakeResult]]:
    if cancel_leg == (price is not None):
        raise typer.BadParameter("give either a PRICE or --cancel")
    if cancel_leg:
        return lambda i: i.cancel_sl(order_id) if sl else i.cancel_tp(order_id)
    assert price is not None
    return lambda i: i.set_sl(order_id, price) if sl else i.set_tp(order_id, price)
