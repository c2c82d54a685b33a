"""The reading commands of ``execflow logs``: trace, stats, tail, errors, report.

Registered on ``logs_app`` (``execflow.cli.logs``) when that module imports this one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from execflow.cli.context import settings_from
from execflow.cli.logs import logs_app
from execflow.cli.progress import scan_progress
from execflow.logs.catalog import CATALOG
from execflow.logtools.error_groups import collect_errors
from execflow.logtools.record import LogRecord
from execflow.logtools.render import record_line, record_text
from execflow.logtools.report import build_report, write_report
from execflow.logtools.stats import collect_stats
from execflow.logtools.tail import LEVELS, TailFilter, follow
from execflow.logtools.timeutil import normalize_bound
from execflow.logtools.trace import trace_order
from execflow.safetext import cell, json_text, markup, safe_text

__all__ = ["errors", "report", "stats", "tail", "trace"]

_DIR_HELP = "Log directory (default: the log_dir setting)."
_COMPONENT_HELP = "Only this component (worker_open, dispatcher, ...; repeatable)."


def _log_dir(ctx: typer.Context, directory: Path | None) -> Path:
    path = directory if directory is not None else settings_from(ctx).log_dir
    if not path.is_dir():
        raise typer.BadParameter(f"no log directory {path}", param_hint="--dir")
    return path


# The components that write their own log file (the shared files are no component's).
_KNOWN_COMPONENTS = tuple(name for name, spec in CATALOG.items() if not spec.shared)


def _components(values: list[str] | None) -> set[str] | None:
    """Accept ``worker_open``, ``open`` (a worker) or ``dispatcher``; refuse unknown names."""
    if not values:
        return None

    def full(value: str) -> str:
        return value if value in _KNOWN_COMPONENTS else f"worker_{value}"

    unknown = sorted(v for v in values if full(v) not in _KNOWN_COMPONENTS)
    if unknown:
        raise typer.BadParameter(
            f"unknown component {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(_KNOWN_COMPONENTS)} (a worker also by its kind: open, close, ...)",
            param_hint="--component",
        )
    return {full(v) for v in values}


def _bounds(since: str | None, until: str | None) -> tuple[str | None, str | None]:
    try:
        return normalize_bound(since), normalize_bound(until)
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 time: {exc}") from None


def _print_json(document: object) -> None:
    sys.stdout.write(json_text(document, indent=True) + "\n")


@logs_app.command("trace")
def trace(
    ctx: typer.Context,
    order_id: str = typer.Argument(..., help="The order id to follow."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
    directory: Path | None = typer.Option(None, "--dir", help=_DIR_HELP),
    window_s: float = typer.Option(
        3600.0, "--window-s", help="How far from the order's lines to look for its trace ids."
    ),
) -> None:
    """Every line about ORDER_ID from every file (rotated, gzipped, text or JSON), in time order."""
    result = trace_order(_log_dir(ctx, directory), order_id, window_s=window_s)
    if as_json:
        _print_json(
            {
                "order_id": order_id,
                "trace_ids": result.trace_ids,
                "files_scanned": result.files_scanned,
                "lines": [r.to_json() for r in result.records],
            }
        )
        return
    if not result.records:
        Console(stderr=True).print(f"no line mentions order_id={markup(order_id)}")
        raise typer.Exit(code=1)
    _emit(Console(highlight=False), result.records)


def _emit(console: Console, records: Iterable[LogRecord]) -> None:
    for record in records:
        if console.is_terminal:
            console.print(record_text(record), soft_wrap=True)
        else:
            sys.stdout.write(record_line(record) + "\n")
    sys.stdout.flush()


@logs_app.command("stats")
def stats(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since", help="ISO time, inclusive (UTC if naive)."),
    until: str | None = typer.Option(None, "--until", help="ISO time, inclusive (UTC if naive)."),
    component: list[str] | None = typer.Option(None, "--component", help=_COMPONENT_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
    directory: Path | None = typer.Option(None, "--dir", help=_DIR_HELP),
) -> None:
    """Per component: processed, success / error rate, skipped, parked, DLQ, latency, rate."""
    lo, hi = _bounds(since, until)
    path, wanted = _log_dir(ctx, directory), _components(component)
    with scan_progress(ctx, "reading logs") as bar:
        report = collect_stats(path, since=lo, until=hi, components=wanted, progress=bar)
    if as_json:
        _print_json(report.to_json())
        return
    table = Table(
        "component", "processed", "success %", "error %", "skipped", "parked", "DLQ",
        "p50 ms", "p95 ms", "p99 ms", "max ms", "per min",
        title=f"execflow log statistics ({len(report.files)} files)",
    )  # fmt: skip
    dlq_lines: list[str] = []
    for name, s in sorted(report.components.items()):
        rates, lat = s.rates(), s.latency()
        table.add_row(
            cell(name),
            str(s.processed),
            f"{rates['success_rate'] * 100:.2f}",
            f"{rates['error_rate'] * 100:.2f}",
            str(s.skipped),
            str(s.parked),
            str(s.dead_lettered),
            *("-" if lat[k] is None else f"{lat[k]:g}" for k in ("p50_ms", "p95_ms", "p99_ms")),
            "-" if lat["max_ms"] is None else f"{lat['max_ms']:g}",
            f"{rates['throughput_per_min']:.1f}",
        )
        dlq_lines.extend(
            f"  {safe_text(name)}: {safe_text(r)}={n}" for r, n in sorted(s.dlq_reasons.items())
        )
    console = Console()
    console.print(table)
    if dlq_lines:
        console.print("DLQ by reason:\n" + "\n".join(dlq_lines), highlight=False, markup=False)


@logs_app.command("tail")
def tail(
    ctx: typer.Context,
    component: list[str] | None = typer.Option(None, "--component", help=_COMPONENT_HELP),
    level: str | None = typer.Option(None, "--level", help="Minimum level (e.g. WARNING)."),
    order: str | None = typer.Option(None, "--order", help="Only lines with this order_id."),
    event: str | None = typer.Option(None, "--event", help="Only tags containing this text."),
    lines: int = typer.Option(10, "--lines", "-n", min=0, help="Lines shown before following."),
    max_seconds: float | None = typer.Option(
        None, "--max-seconds", help="Stop after this long (default: until Ctrl-C)."
    ),
    poll_s: float = typer.Option(0.25, "--poll-s", help="How often to look for new lines."),
    directory: Path | None = typer.Option(None, "--dir", help=_DIR_HELP),
) -> None:
    """Follow the current log files across rotation, with filters; colour on a terminal."""
    if level is not None and level.upper() not in LEVELS:
        raise typer.BadParameter(f"--level must be one of {', '.join(LEVELS)}")
    wanted = TailFilter(
        components=frozenset(c) if (c := _components(component)) else None,
        min_level=level.upper() if level else None,
        order_id=order,
        event=event,
    )
    console = Console(highlight=False)
    try:
        follow(
            _log_dir(ctx, directory),
            wanted,
            lambda records: _emit(console, records),
            lines=lines,
            poll_s=poll_s,
            max_seconds=max_seconds,
        )
    except KeyboardInterrupt:
        raise typer.Exit(code=0) from None


@logs_app.command("errors")
def errors(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since", help="ISO time, inclusive."),
    until: str | None = typer.Option(None, "--until", help="ISO time, inclusive."),
    component: list[str] | None = typer.Option(None, "--component", help=_COMPONENT_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
    directory: Path | None = typer.Option(None, "--dir", help=_DIR_HELP),
) -> None:
    """Errors grouped by type and component: count, first / last time, one example traceback."""
    lo, hi = _bounds(since, until)
    path, wanted = _log_dir(ctx, directory), _components(component)
    with scan_progress(ctx, "reading logs") as bar:
        groups = collect_errors(path, since=lo, until=hi, components=wanted, progress=bar)
    if as_json:
        _print_json({"groups": [g.to_json() for g in groups]})
        return
    console = Console(highlight=False)
    if not groups:
        console.print("no errors")
        return
    for group in groups:
        console.print(
            f"[bold red]{markup(group.error_type)}[/] in [cyan]{markup(group.component)}[/]: "
            f"{group.count}x, first {markup(group.first_ts)}, last {markup(group.last_ts)}"
        )
        example = group.example
        console.print(
            f"  example ({safe_text(example.file)}): [{safe_text(example.tag)}] "
            f"{safe_text(example.get('error') or '')}"
            f" order_id={safe_text(example.get('order_id') or '-')}"
            f" trace_id={safe_text(example.get('trace_id') or '-')}",
            markup=False,
        )
        traceback = example.get("traceback")
        if traceback:
            block = safe_text(traceback, keep_newlines=True)
            console.print("    " + block.replace("\n", "\n    "), markup=False)


@logs_app.command("report")
def report(
    ctx: typer.Context,
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    since: str | None = typer.Option(None, "--since", help="ISO time, inclusive."),
    until: str | None = typer.Option(None, "--until", help="ISO time, inclusive."),
    component: list[str] | None = typer.Option(None, "--component", help=_COMPONENT_HELP),
    directory: Path | None = typer.Option(None, "--dir", help=_DIR_HELP),
) -> None:
    """One self-contained HTML file: throughput, latency, errors, DLQ, symbols, LPs, rejects."""
    lo, hi = _bounds(since, until)
    path, wanted = _log_dir(ctx, directory), _components(component)
    with scan_progress(ctx, "reading logs") as bar:
        html = build_report(path, since=lo, until=hi, components=wanted, progress=bar)
    try:
        write_report(out, html)
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot write {out}: {exc.strerror or exc}", param_hint="--out"
        ) from None
    Console(stderr=True).print(f"wrote {markup(out)} ({len(html)} bytes)")
