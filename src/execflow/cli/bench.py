"""``execflow bench``: end-to-end throughput and latency, embedded and distributed."""

from __future__ import annotations

import asyncio

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
from execflow.cli.progress import step_progress
from execflow.safetext import markup

__all__ = ["bench_command", "render_bench"]


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
) -> None:
    """Measure the pipeline (all logging on) against the raw RabbitMQ relay rate."""
    console = Console(width=None if Console().is_terminal else 110)
    config = BenchConfig(
        embedded_reports=embedded_reports,
        distributed_reports=distributed_reports,
        relay_messages=relay_messages,
        distributed=distributed,
        amqp_url=amqp_url,
        redis_url=redis_url,
        postgres_admin_url=postgres_admin_url,
        timeout_s=timeout,
    )
    with step_progress(ctx) as step:

        def progress(line: str) -> None:
            console.print(f"[dim]... {markup(line)}[/]")
            if step is not None:
                step(line)

        result = asyncio.run(run_bench(config, progress))
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
    for name, figures in (
        ("max rate", result.distributed_max),
        ("half rate", result.distributed_half),
    ):
        if figures is not None and figures.memory is not None:
            console.print(f"RSS per process at the end of the distributed {name} pass:")
            for line in figures.memory.lines():
                console.print(f"  {markup(line)}")
    for note in result.notes:
        console.print(f"[bold red]note:[/] {markup(note)}")
    console.print(f"machine: {machine()}")
