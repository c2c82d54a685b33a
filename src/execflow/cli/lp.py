"""``execflow lp quality``: each LP's execution quality, computed from the database.

The records are the ones the LP gateways write (``lp_executions``, one per request
sent); the figures are ``execflow.domain.lpquality``'s, the same the gateways put in
their log lines and metrics. Only the database is opened.
Exit codes: 0 (also when nothing was recorded), 2 a bad ``--since``, 3 the database
cannot be reached.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from decimal import Decimal

import typer
from rich.console import Console
from rich.table import Table

from execflow.backends.factory import make_database
from execflow.backends.sql import SqlDatabase
from execflow.backends.sql_lp import SqlLpExecutionStore
from execflow.cli.context import settings_from
from execflow.cli.failures import process_logging
from execflow.domain.lpquality import LatencyStats, LpQuality, QualitySummary
from execflow.errors import ConfigError
from execflow.logtools.timeutil import parse_ts
from execflow.safetext import cell, json_text, markup
from execflow.settings import Settings

__all__ = ["lp_app", "parse_since"]

lp_app = typer.Typer(help="The liquidity providers: execution quality.", no_args_is_help=True)

_COMPONENT = "supervisor"
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``: an ISO 8601 time (UTC if naive) or a duration back from now (``90m``)."""
    relative = _RELATIVE.fullmatch(text.strip().lower())
    if relative is not None:
        return now - timedelta(seconds=float(relative[1]) * _UNIT_S[relative[2]])
    try:
        return parse_ts(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: an ISO 8601 time or a duration like 30m, 6h, 7d", param_hint="--since"
        ) from None


async def _summarise(settings: Settings, since: datetime | None, lp: str | None) -> list[LpQuality]:
    database = make_database(settings)
    if not isinstance(database, SqlDatabase):
        raise ConfigError("LP quality is read from the SQL database", setting="database_url")
    await database.connect()
    try:
        summary = QualitySummary()
        async for execution in SqlLpExecutionStore(database).iter(since=since, lp=lp):
            summary.add(execution)
        return summary.result()
    finally:
        await database.close()


@lp_app.command("quality")
def quality_command(
    ctx: typer.Context,
    since: str | None = typer.Option(
        None, "--since", help="Requests sent from this time: ISO 8601 (UTC if naive) or 6h, 7d."
    ),
    lp: str | None = typer.Option(None, "--lp", help="Only this LP."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """Latency to first report and fill, slippage (pips, USD), fill ratio, rejects, per LP."""
    settings = settings_from(ctx)
    start = parse_since(since, datetime.now().astimezone()) if since is not None else None
    with process_logging(settings, _COMPONENT):
        qualities = asyncio.run(_summarise(settings, start, lp))
    if as_json:
        document = {
            "since": start.isoformat() if start is not None else None,
            "lp": lp,
            "lps": [quality.to_dict() for quality in qualities],
        }
        typer.echo(json_text(document))
        return
    console = Console(soft_wrap=True)
    if not qualities:
        console.print("no requests to an LP recorded" + (" since then" if start else ""))
        return
    console.print(quality_table(qualities))
    reasons = reject_table(qualities)
    if reasons.row_count:
        console.print(reasons)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _latency(stats: LatencyStats) -> str:
    if not stats.count:
        return "-"
    return (
        f"{_ms(stats.p50_ms)} / {_ms(stats.p95_ms)} / {_ms(stats.p99_ms)} / "
        f"{_ms(stats.max_ms)} (n={stats.count})"
    )


def _pct(value: Decimal | None) -> str:
    return "-" if value is None else f"{value * 100:.2f} %"


def _num(value: Decimal | None, places: int = 2) -> str:
    return "-" if value is None else f"{value:,.{places}f}"


def quality_table(qualities: list[LpQuality]) -> Table:
    """One column per LP, one row per figure."""
    table = Table("", *(markup(q.lp) for q in qualities), title="LP execution quality")
    rows: list[tuple[str, list[str]]] = [
        ("requests sent", [str(q.requests) for q in qualities]),
        ("  answered", [str(q.answered) for q in qualities]),
        (
            "  by kind",
            [", ".join(f"{k} {n}" for k, n in q.requests_by_kind.items()) for q in qualities],
        ),
        ("first report ms p50/p95/p99/max", [_latency(q.first_report) for q in qualities]),
        ("fill ms (market) p50/p95/p99/max", [_latency(q.fill) for q in qualities]),
        ("market orders", [str(q.market_orders) for q in qualities]),
        (
            "  lots filled / requested",
            [f"{_num(q.lots_filled)} / {_num(q.lots_requested)}" for q in qualities],
        ),
        ("  fill ratio", [_pct(q.fill_ratio) for q in qualities]),
        ("rejected", [f"{q.rejected} ({_pct(q.reject_ratio)})" for q in qualities]),
        (
            "slippage: fills +/0/-",
            [
                f"{q.slippage.count} ({q.slippage.favourable} / {q.slippage.zero} / "
                f"{q.slippage.adverse})"
                for q in qualities
            ],
        ),
        (
            "  pips mean (min .. max)",
            [
                f"{_num(q.slippage.mean_pips, 3)} "
                f"({_num(q.slippage.min_pips)} .. {_num(q.slippage.max_pips)})"
                for q in qualities
            ],
        ),
        (
            "  USD total (mean)",
            [f"{_num(q.slippage.total_usd)} ({_num(q.slippage.mean_usd)})" for q in qualities],
        ),
        (
            "sent between",
            [f"{_when(q.first_sent_at)} .. {_when(q.last_sent_at)}" for q in qualities],
        ),
    ]
    for label, values in rows:
        table.add_row(label, *values)
    return table


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def reject_table(qualities: list[LpQuality]) -> Table:
    """Rejects by the LP's reason (its own text, shown escaped)."""
    table = Table("lp", "reason", "rejects", "of requests", title="rejects by reason")
    for quality in qualities:
        for reason, count in quality.rejects_by_reason.items():
            share = Decimal(count) / quality.requests if quality.requests else None
            table.add_row(cell(quality.lp), cell(reason), str(count), _pct(share))
    return table
