"""``execflow demo``: the whole pipeline, embedded, against the LP simulator, then a summary.

The summary says which dead letters the simulated LP caused on purpose (its malformed
messages and double fills) and lists every file the run left in its directory, read
from the directory itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from execflow.apps.demo import DemoOptions, DemoOutcome, run_demo
from execflow.apps.scenario import ScenarioConfig, ScenarioResult
from execflow.cli.context import settings_from
from execflow.cli.progress import phase_progress
from execflow.pipeline.reconcile import ReconcileReport
from execflow.safetext import cell, markup
from execflow.sim.config import LpConfig

__all__ = [
    "demo_command",
    "injected_note",
    "render_files",
    "render_reconciliation",
    "unsettled_note",
]

_COMPONENTS = (
    "intake",
    "simulator",
    "lp_gateway",
    "dispatcher",
    "worker_open",
    "worker_close",
    "worker_pending",
    "worker_cancel",
    "worker_reject",
    "worker_stoploss",
    "worker_takeprofit",
    "db_writer",
)
# What the simulated LP is told to get wrong, and the dead letters each fault ends in.
_INJECTED = (
    ("malformed_rate", "malformed messages", "malformed_report"),
    ("double_fill_rate", "fills of both legs of one position", "needs_review"),
)


def demo_command(
    ctx: typer.Context,
    accounts: int = typer.Option(20, min=1, help="Accounts (live and demo, three groups)."),
    orders: int = typer.Option(5000, min=1, help="New orders to place."),
    rate: float = typer.Option(0.0, min=0, help="New orders per second; 0 = as fast as possible."),
    reject_rate: float = typer.Option(0.03, min=0, max=1, help="Share of requests the LP rejects."),
    duplicate_rate: float = typer.Option(0.05, min=0, max=1, help="Share of reports sent twice."),
    reorder_rate: float = typer.Option(0.05, min=0, max=1, help="Share of reports reordered."),
    malformed_rate: float = typer.Option(0.02, min=0, max=1, help="Malformed messages per report."),
    partial_rate: float = typer.Option(0.1, min=0, max=1, help="Share of fills split in parts."),
    double_fill_rate: float = typer.Option(
        0.05,
        min=0,
        max=1,
        help="Share of SL/TP fills where the LP wrongly fills the other leg too.",
    ),
    seed: int = typer.Option(42, help="Seed of prices, LP behaviour and the scenario."),
    log_format: str = typer.Option("text", help="text or json."),
    run_dir: Path = typer.Option(
        Path("execflow-demo"), "--dir", help="Run directory (emptied first)."
    ),
    settle_timeout: float = typer.Option(
        600.0, min=1, help="Closing out: give up after this many seconds in all."
    ),
    settle_stall: float = typer.Option(
        60.0, min=1, help="Closing out: give up after this many seconds with no order ending."
    ),
    via_fix: bool = typer.Option(
        False,
        "--via-fix",
        help="Talk to the simulated LP through a real FIX 4.4 session on 127.0.0.1 "
        "(the LP gateway; quotes arrive as market data).",
    ),
) -> None:
    """Run the embedded pipeline against the LP simulator and reconcile the result."""
    if log_format not in ("text", "json"):
        raise typer.BadParameter("must be text or json", param_hint="--log-format")
    # wide enough for the summary table when the output is not a terminal (make, CI)
    console = Console(width=None if Console().is_terminal else 110)
    options = DemoOptions(
        run_dir=run_dir,
        accounts=accounts,
        scenario=ScenarioConfig(
            orders=orders,
            rate_per_s=rate,
            settle_timeout_s=settle_timeout,
            settle_stall_s=settle_stall,
        ),
        lp=LpConfig(
            reject_rate=reject_rate,
            partial_rate=partial_rate,
            duplicate_rate=duplicate_rate,
            reorder_rate=reorder_rate,
            malformed_rate=malformed_rate,
            double_fill_rate=double_fill_rate,
        ),
        seed=seed,
        log_format=log_format,
        via_fix=via_fix,
    )
    base = settings_from(ctx)
    console.print(
        f"[bold]execflow demo[/]: {accounts} accounts, {orders} orders, seed {seed}, "
        f"LP rejects {reject_rate:.0%}, duplicates {duplicate_rate:.0%}, "
        f"reorders {reorder_rate:.0%}, malformed {malformed_rate:.0%}, partials {partial_rate:.0%}"
        + (", via FIX 4.4" if via_fix else "")
    )
    # the bars go to stderr at a terminal only (``--quiet``: none); a refused run
    # directory is a ConfigError: one line on stderr, exit 2 (the root command's boundary)
    with phase_progress(ctx, {"orders": "placing orders", "settle": "closing out"}) as bars:
        outcome = asyncio.run(run_demo(base, options, bars))
    render(console, outcome, options.lp)
    if not outcome.ok:
        raise typer.Exit(1)


def render(console: Console, outcome: DemoOutcome, lp: LpConfig | None = None) -> None:
    """Scenario figures, per-component table, DLQ reasons, verdict, every file written."""
    scenario = outcome.scenario
    accepted = ", ".join(f"{markup(k)} {v}" for k, v in sorted(scenario.accepted.items()))
    refused = ", ".join(f"{markup(k)} {v}" for k, v in scenario.refused.most_common()) or "none"
    finals = ", ".join(f"{markup(k)} {v}" for k, v in sorted(scenario.final_statuses.items()))
    console.print(
        f"\n[bold]scenario[/] {scenario.orders_placed} orders placed in {scenario.elapsed_s:.1f} s"
        f" (run {outcome.elapsed_s:.1f} s; closing out {scenario.settle_s:.1f} s)"
        f"\n  sent: {accepted}\n  refused locally: {refused}\n  final: {finals}"
    )
    if scenario.unsettled:
        console.print(unsettled_note(scenario), highlight=False)
    table = Table(title="components")
    for column in ("component", "processed", "success", "skipped", "parked", "DLQ"):
        table.add_column(column, justify="left" if column == "component" else "right")
    for column in ("p50 ms", "p95 ms", "p99 ms"):
        table.add_column(column, justify="right")
    for name in _COMPONENTS:
        fields = outcome.stats.get(name)
        if fields is None:
            continue
        table.add_row(
            name,
            *(
                str(fields.get(k, 0))
                for k in ("processed", "success", "skipped", "parked", "dead_lettered")
            ),
            *(f"{float(fields.get(k, 0.0)):.2f}" for k in ("p50_ms", "p95_ms", "p99_ms")),
        )
    console.print(table)
    if outcome.dlq_reasons:
        reasons = Table("DLQ reason", "messages", title="dead letters")
        for reason, count in outcome.dlq_reasons.most_common():
            reasons.add_row(cell(reason), str(count))
        console.print(reasons)
    else:
        console.print("dead letters: none")
    if lp is not None:
        console.print(injected_note(lp), highlight=False)
    render_reconciliation(console, outcome.reconciliation)
    render_files(console, outcome.run_dir, outcome.log_dir, outcome.database)


def unsettled_note(scenario: ScenarioResult) -> str:
    """The line naming the orders that did not end, their statuses, and why closing out stopped."""
    why = {
        "stalled": "no order had ended for the stall window (--settle-stall)",
        "limit": "the overall limit (--settle-timeout) was reached",
    }.get(scenario.settle_stop or "", "closing out stopped")
    statuses = ", ".join(f"{markup(k)} {v}" for k, v in scenario.unsettled_statuses.most_common())
    shown = ", ".join(markup(order_id) for order_id in scenario.unsettled[:10])
    return (
        f"[bold red]{len(scenario.unsettled)} orders not final[/] after "
        f"{scenario.settle_s:.1f} s of closing out ({why}): {statuses or 'statuses unknown'}; "
        f"{shown}{' ...' if len(scenario.unsettled) > 10 else ''}"
    )


def injected_note(lp: LpConfig) -> str:
    """The sentence saying which dead letters the demo caused on purpose, and which not."""
    faults = [
        f"{what} (--{name.replace('_', '-')} {getattr(lp, name):.0%}, dead-lettered as {reasons})"
        for name, what, reasons in _INJECTED
        if getattr(lp, name) > 0
    ]
    if not faults:
        return "no fault was injected: any dead letter above is a finding"
    return (
        "[bold]the dead letters above were injected on purpose[/]: the simulated LP was told "
        f"to send {markup('; '.join(faults))}; the pipeline must refuse exactly those. "
        "A dead letter with another reason is a finding."
    )


def render_files(console: Console, run_dir: Path, log_dir: Path, database: Path) -> None:
    """Every file under the run directory, as found there (logs, database, ...), with sizes."""
    files = sorted(p for p in run_dir.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    console.print(
        f"\nfiles written: {len(files)} under {markup(run_dir)}/ ({total:,} bytes)",
        highlight=False,
    )
    width = max((len(str(p.relative_to(run_dir))) for p in files), default=0)
    for path in files:
        name = str(path.relative_to(run_dir))
        console.print(
            f"  {markup(name)}{' ' * (width - len(name))} {path.stat().st_size:>12,} bytes",
            highlight=False,
        )
    console.print(f"logs:     {markup(log_dir)}/", highlight=False)
    console.print(f"database: {markup(database)}", highlight=False)


def render_reconciliation(console: Console, report: ReconcileReport, limit: int = 50) -> None:
    """The verdict line and, when there are any, a table of differences."""
    head = (
        f"{report.accounts} accounts, {report.orders} orders, {report.events} events "
        "checked against the database"
    )
    if report.ok:
        console.print(f"[bold green]reconciliation: clean[/] ({head})")
        return
    console.print(f"[bold red]reconciliation: {len(report.differences)} differences[/] ({head})")
    table = Table("account", "order", "what", "database says", "state says")
    for diff in report.differences[:limit]:
        # ids and values as the database and the state store hold them: outside data
        table.add_row(
            cell(diff.account_id),
            cell(diff.order_id or ""),
            cell(diff.what),
            cell(diff.expected),
            cell(diff.actual),
        )
    console.print(table)
