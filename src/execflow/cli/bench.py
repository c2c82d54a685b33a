"""``execflow bench``: end-to-end throughput and latency, embedded and distributed.

``--instances 1,2,4`` runs the scale-out passes instead (``apps.scaleout``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from execflow.apps.bench import (
    DEFAULT_AMQP_URL,
    DEFAULT_POSTGRES_ADMIN_URL,
    DEFAULT_REDIS_URL,
    BenchConfig,
    BenchResult,
    RunFigures,
    machine,
    run_bench,
)
from execflow.apps.scaleout import ScaleOutResult, Shape, parse_instances, run_scale_out
from execflow.cli.progress import step_progress
from execflow.safetext import markup

__all__ = ["bench_command", "render_bench", "render_scale_out"]

_INSTANCES_HELP = (
    "Scale-out instead: N processes each of the dispatcher, worker open and db writer, "
    "per N (comma list or repeated), spread and hot accounts, distributed max rate only."
)
# the CPU columns of the scale-out table: (heading, group of ``RunFigures.cpu_by_group``)
_CPU_COLUMNS = (
    ("disp", "dispatcher"),
    ("worker", "worker_open"),
    ("writer", "db_writer"),
    ("rabbit", "rabbitmq"),
    ("redis", "redis"),
    ("pg", "postgresql"),
)


def bench_command(
    ctx: typer.Context,
    embedded_reports: int = typer.Option(1500, min=10, help="Reports per embedded pass."),
    distributed_reports: int = typer.Option(1500, min=10, help="Reports per distributed pass."),
    relay_messages: int = typer.Option(5000, min=10, help="Messages of the RabbitMQ relay."),
    distributed: bool = typer.Option(True, help="Also measure RabbitMQ / Redis / PostgreSQL."),
    amqp_url: str = typer.Option(DEFAULT_AMQP_URL, help="RabbitMQ for the distributed pass."),
    redis_url: str = typer.Option(DEFAULT_REDIS_URL, help="Redis (a key prefix is added)."),
    postgres_admin_url: str = typer.Option(
        DEFAULT_POSTGRES_ADMIN_URL, help="PostgreSQL admin DSN (a database is created)."
    ),
    timeout: float = typer.Option(300.0, min=1, help="Upper bound of each pass (s)."),
    instances: list[str] | None = typer.Option(None, "--instances", help=_INSTANCES_HELP),
    spread_accounts: int = typer.Option(
        200, min=1, help="Scale-out: accounts of the spread shape."
    ),
    hot_accounts: int = typer.Option(2, min=1, help="Scale-out: accounts of the hot shape."),
    profile_dir: Path | None = typer.Option(
        None,
        file_okay=False,
        help="Run each distributed process under cProfile (its loop thread's CPU time) and "
        "write its stats here, one <pass>-<process>-<instance>.prof each.",
    ),
) -> None:
    """Measure the pipeline (all logging on) against the raw RabbitMQ relay rate."""
    console = Console(width=None if Console().is_terminal else 140)
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    config = BenchConfig(
        embedded_reports=embedded_reports,
        distributed_reports=distributed_reports,
        relay_messages=relay_messages,
        distributed=distributed,
        amqp_url=amqp_url,
        redis_url=redis_url,
        postgres_admin_url=postgres_admin_url,
        timeout_s=timeout,
        profile_dir=profile_dir,
    )
    counts: tuple[int, ...] = ()
    if instances:
        try:
            counts = parse_instances(instances)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--instances") from exc
    shapes = (Shape("spread", spread_accounts), Shape("hot", hot_accounts))
    with step_progress(ctx) as step:

        def progress(line: str) -> None:
            console.print(f"[dim]... {markup(line)}[/]")
            if step is not None:
                step(line)

        if counts:
            scaled = asyncio.run(run_scale_out(config, counts, shapes, progress))
        else:
            result = asyncio.run(run_bench(config, progress))
    if counts:
        render_scale_out(console, scaled)
    else:
        render_bench(console, result)


def _row(table: Table, name: str, figures: RunFigures | None, ratio: str = "") -> None:
    if figures is None:
        return
    table.add_row(
        name,
        str(figures.reports),
        f"{figures.rate:,.0f}",
        f"{figures.p50_ms:.1f}",
        f"{figures.p95_ms:.1f}",
        f"{figures.p99_ms:.1f}",
        ratio,
    )


def render_bench(console: Console, result: BenchResult) -> None:
    """The figures table, the ratios and the machine line."""
    table = Table(title="pipeline benchmark (report published -> OPEN:SUCCESS after commit)")
    for column in ("pass", "reports", "reports/s", "p50 ms", "p95 ms", "p99 ms", "of relay"):
        table.add_column(column, justify="left" if column == "pass" else "right")
    _row(table, "embedded, max rate", result.embedded_max)
    _row(table, "embedded, half rate", result.embedded_half)
    relay = result.relay_rate
    for name, figures in (
        ("distributed, max rate", result.distributed_max),
        ("distributed, half rate", result.distributed_half),
    ):
        ratio = f"{figures.rate / relay:.1%}" if figures is not None and relay else ""
        _row(table, name, figures, ratio)
    console.print(table)
    if relay is not None:
        console.print(f"RabbitMQ two-hop relay (confirms + acks): {relay:,.0f} messages/s")
    share = result.logging_cpu_share
    per_report = result.cpu_ms_per_report()
    if share is not None and per_report is not None:
        console.print(
            f"logging CPU share (embedded): {share:.1%} "
            f"({per_report[0]:.2f} ms CPU per report with logging, {per_report[1]:.2f} ms without)"
        )
    _distributed_lines(console, result)
    for note in result.notes:
        console.print(f"[bold red]note:[/] {markup(note)}")
    console.print(f"machine: {machine()}")


def _distributed_lines(console: Console, result: BenchResult) -> None:
    """CPU per report and RSS per process of each distributed pass."""
    for name, figures in (
        ("max rate", result.distributed_max),
        ("half rate", result.distributed_half),
    ):
        if figures is not None and figures.cpu_s > 0:
            console.print(
                f"distributed {name}: {figures.cpu_ms_per_report():.2f} ms CPU per report, "
                f"every process and server ({_cpu_split(figures)}); "
                f"{figures.conflicts or 0} VERSION_CONFLICTs, "
                f"{figures.dead_lettered} reports dead-lettered"
            )
    for name, figures in (
        ("max rate", result.distributed_max),
        ("half rate", result.distributed_half),
    ):
        if figures is not None and figures.memory is not None:
            console.print(f"RSS per process at the end of the distributed {name} pass:")
            for line in figures.memory.lines():
                console.print(f"  {markup(line)}")


def _cpu_split(figures: RunFigures) -> str:
    return ", ".join(
        f"{group} {figures.cpu_ms_per_report(group):.2f}" for group, _ in figures.cpu_by_group
    )


def render_scale_out(console: Console, result: ScaleOutResult) -> None:
    """Per shape and N: reports/s, CPU ms per report (total and by process), conflicts."""
    table = Table(
        title="scale-out: N instances each of dispatcher, worker open, db writer (max rate)",
        caption=(
            "traffic: shape and accounts; CPU ms: per report, every process and server "
            "(disp..pg: a component's instances summed, each server); net: CPU ms less "
            "what the processes and servers spent idle (other clients); conflicts: "
            "VERSION_CONFLICTs per report; DLQ: reports dead-lettered, not applied"
        ),
    )
    headings = (
        "traffic",
        "N",
        "reports",
        "reports/s",
        "CPU ms",
        "net",
        *(h for h, _ in _CPU_COLUMNS),
    )
    for heading in (*headings, "conflicts", "DLQ"):
        table.add_column(heading, justify="left" if heading == "traffic" else "right")
    for row in result.rows:
        figures = row.figures
        table.add_row(
            f"{row.shape.name} {row.shape.accounts}",
            str(row.instances),
            str(figures.reports),
            f"{figures.rate:,.0f}",
            f"{figures.cpu_ms_per_report():.2f}",
            f"{figures.net_cpu_ms_per_report():.2f}",
            *(f"{figures.cpu_ms_per_report(group):.2f}" for _, group in _CPU_COLUMNS),
            f"{row.conflicts_per_report:.3f}",
            str(figures.dead_lettered),
        )
    console.print(table)
    for row in result.rows:
        if row.figures.refused:
            reasons = ", ".join(f"{n} {reason}" for reason, n in row.figures.refused)
            console.print(
                f"{row.shape.name} at {row.instances}: orders refused by the intake "
                f"(no fill sent): {markup(reasons)}"
            )
    for note in result.notes:
        console.print(f"[bold red]note:[/] {markup(note)}")
    console.print(f"machine: {machine()}")
