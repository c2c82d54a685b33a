"""The read path on the command line, over the same queries (and JSON shapes) as the API.

::

    execflow order show ORDER_ID [--json]          # the order now, and its events
    execflow account show ACCOUNT [--json]         # balance, margins, equity, positions
    execflow orders list [--account A] [--status S ...] [--symbol X] [--limit N] [--json]

Queries: ``execflow.api.queries``; JSON: the API's bodies (``execflow.api.views``). With
a ``memory://`` state store (the embedded deployment's SQLite file) the store is rebuilt
from the database first, as ``orders stuck`` does. Every value from outside is shown
through ``execflow.safetext``. Exit code 1 when the order or account is unknown.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from execflow.api.queries import find_orders, read_account, read_events, read_order
from execflow.api.server import api_store
from execflow.api.views import account_out, event_out, order_out
from execflow.backends.api_store import OrderQuery
from execflow.cli.context import settings_from
from execflow.cli.run import run_with_services
from execflow.domain.enums import OrderStatus
from execflow.pipeline.rebuild import rebuild_if_needed
from execflow.pipeline.services import Services
from execflow.safetext import cell, json_text, markup, safe_text

__all__ = ["account_app", "list_orders", "show_account", "show_order"]

COMPONENT = "supervisor"

account_app = typer.Typer(help="Read accounts (balance, margins, equity, positions).")

_JSON = typer.Option(False, "--json", help="Print the API's JSON body.")


async def _ready(services: Services) -> None:
    if services.settings.state_url.startswith("memory://"):
        log = services.logger(COMPONENT)
        await rebuild_if_needed(services.state, services.database, services.settings.seed_file, log)


def _fields(title: str, values: dict[str, Any]) -> Table:
    table = Table("field", "value", title=title)
    for name, value in values.items():
        if value is None or isinstance(value, dict | list):
            continue
        table.add_row(name, cell(value))
    return table


def show_order(
    ctx: typer.Context, order_id: str = typer.Argument(...), as_json: bool = _JSON
) -> None:
    """One order as it is now, and its events from the database."""

    async def body(services: Services) -> dict[str, Any] | None:
        await _ready(services)
        order = await read_order(services, order_id)
        if order is None:
            return None
        events = await read_events(services, order_id)
        return {
            "order": order_out(order).model_dump(mode="json"),
            "events": [event_out(e).model_dump(mode="json") for e in events],
        }

    found = run_with_services(settings_from(ctx), COMPONENT, body)
    if found is None:
        typer.echo(safe_text(f"unknown order {order_id}"), err=True)
        raise typer.Exit(code=1)
    if as_json:
        typer.echo(json_text(found))
        return
    order = found["order"]
    console = Console()
    shown = {**order, "sl": order["sl"]["state"], "tp": order["tp"]["state"]}
    console.print(_fields(f"order {markup(order_id)}", shown))
    table = Table("chain", "kind", "status", "balance Δ", "time", "hash", title="events")
    for event in found["events"]:
        table.add_row(
            cell(event["chain_seq"]),
            cell(event["kind"]),
            cell(event["status"]),
            cell(event["deltas"].get("balance")),
            cell(event["created_at"]),
            cell((event["hash"] or "")[:12]),
        )
    console.print(table)


@account_app.command("show")
def show_account(
    ctx: typer.Context, account_id: str = typer.Argument(...), as_json: bool = _JSON
) -> None:
    """Balance, used and free margin, equity and positions at the latest quotes."""

    async def body(services: Services) -> dict[str, Any] | None:
        await _ready(services)
        view = await read_account(services, account_id)
        return None if view is None else account_out(view).model_dump(mode="json")

    found = run_with_services(settings_from(ctx), COMPONENT, body)
    if found is None:
        typer.echo(safe_text(f"unknown account {account_id}"), err=True)
        raise typer.Exit(code=1)
    if as_json:
        typer.echo(json_text(found))
        return
    console = Console()
    console.print(_fields(f"account {markup(account_id)}", found))
    table = Table("order", "symbol", "side", "qty", "open", "market", "floating", "margin")
    for p in found["positions"]:
        table.add_row(
            *(cell(p[k]) for k in ("order_id", "symbol", "side", "qty", "open_price")),
            cell(p["market_price"]),
            cell(p["floating_profit"]),
            cell(p["margin"]),
        )
    console.print(table)


def list_orders(
    ctx: typer.Context,
    account: str | None = typer.Option(None, "--account", "-a", help="One account."),
    status: list[OrderStatus] | None = typer.Option(
        None, "--status", "-s", help="Repeatable: QUEUED, OPEN, CLOSED, ..."
    ),
    symbol: str | None = typer.Option(None, "--symbol"),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    cursor: str | None = typer.Option(None, "--cursor", help="next_cursor of the last page"),
    as_json: bool = _JSON,
) -> None:
    """Orders from the database, newest first, a page at a time."""
    query = OrderQuery(
        accounts=None if account is None else (account,),
        status=tuple(s.value for s in status or ()),
        symbol=symbol,
        after=cursor,
        limit=limit,
    )

    async def body(services: Services) -> dict[str, Any]:
        page = await find_orders(api_store(services), query)
        return {
            "items": [order_out(o).model_dump(mode="json") for o in page.orders],
            "next_cursor": page.next_cursor,
        }

    page = run_with_services(settings_from(ctx), COMPONENT, body)
    if as_json:
        typer.echo(json_text(page))
        return
    table = Table(
        "order", "account", "symbol", "side", "type", "qty", "status", "open", "close",
        "net profit", "updated", title="orders",
    )  # fmt: skip
    for o in page["items"]:
        table.add_row(
            *(cell(o[k]) for k in ("order_id", "account_id", "symbol", "side", "type", "qty")),
            cell(o["status"]),
            cell(o["open_price"]),
            cell(o["close_price"]),
            cell(o["net_profit"]),
            cell(o["updated_at"]),
        )
    console = Console()
    console.print(table)
    if page["next_cursor"]:
        console.print(f"next page: --cursor {markup(page['next_cursor'])}")
