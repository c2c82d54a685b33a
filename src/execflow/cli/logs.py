"""``execflow logs``: check the log files against the catalog, clean up old backups.

The reading commands (trace, stats, tail, errors, report) live in ``cli/logs_read.py``,
which adds them to ``logs_app`` (it imports this module; this one never imports it).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from execflow.cli.context import settings_from
from execflow.logs.catalog import CATALOG, resolve
from execflow.logs.retention import BACKUP_NAME, cleanup
from execflow.safetext import cell, markup, safe_text
from execflow.settings import Settings

__all__ = ["FileCheck", "check_files", "logs_app"]

logs_app = typer.Typer(
    help="Inspect and maintain the provider log files (logs/provider by default).",
    no_args_is_help=True,
)

# A file may overshoot its limit by one batch of lines; twice the limit means rotation
# is not happening (or the limit was lowered without a restart).
_OVERSIZE_FACTOR = 2


@dataclass
class FileCheck:
    """What ``logs check`` found for one file."""

    path: Path
    size: int | None
    max_bytes: int
    backups_allowed: int
    backups_present: int
    writable: bool
    problems: list[str] = field(default_factory=list)


def _can_write_dir(directory: Path) -> bool:
    probe = directory
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return False
    try:
        handle, name = tempfile.mkstemp(dir=probe, prefix=".execflow-check-")
    except OSError:
        return False
    os.close(handle)
    os.unlink(name)
    return True


def _can_write_file(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def _backups(directory: Path, file_name: str) -> list[int]:
    if not directory.is_dir():
        return []
    numbers = []
    for entry in directory.iterdir():
        match = BACKUP_NAME.match(entry.name)
        if match and match["base"] == file_name:
            numbers.append(int(match["number"]))
    return numbers


def check_files(settings: Settings) -> tuple[bool, list[FileCheck]]:
    """Check the directory and every catalog file (and other instances' files)."""
    directory = Path(settings.log_dir)
    dir_ok = _can_write_dir(directory)
    checks: list[FileCheck] = []
    for name in CATALOG:
        resolved = resolve(settings, name)
        paths = [resolved.path]
        if directory.is_dir() and not resolved.spec.shared:
            pattern = re.compile(rf"^{re.escape(name)}-\d+\.log$")
            paths += sorted(p for p in directory.iterdir() if pattern.match(p.name))
        for path in paths:
            numbers = _backups(directory, path.name)
            exists = path.exists()
            result = FileCheck(
                path=path,
                size=path.stat().st_size if exists else None,
                max_bytes=resolved.max_bytes,
                backups_allowed=resolved.backups,
                backups_present=len(numbers),
                writable=(_can_write_file(path) and path.is_file()) if exists else dir_ok,
            )
            if exists and not path.is_file():
                result.problems.append("not a regular file")
            elif not result.writable:
                result.problems.append("not writable")
            if result.size is not None and result.size > _OVERSIZE_FACTOR * resolved.max_bytes:
                result.problems.append("far above its size limit: rotation is not happening")
            extra = [n for n in numbers if n > resolved.backups]
            if extra:
                result.problems.append(
                    f"{len(extra)} backup(s) beyond the allowed {resolved.backups}"
                )
            checks.append(result)
    return dir_ok, checks


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    if value < 1024:
        return f"{value} B"
    size = value / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


@logs_app.command("check")
def check(ctx: typer.Context) -> None:
    """List every catalog file (path, size, limit, backups, writable); exit 1 on a problem."""
    settings = settings_from(ctx)
    dir_ok, checks = check_files(settings)
    console = Console()
    table = Table(
        "file",
        "size",
        "limit",
        "backups",
        "writable",
        "status",
        title=f"{markup(settings.log_dir)}/",
    )
    for item in checks:
        status = "; ".join(item.problems) or ("ok" if item.size is not None else "not created yet")
        table.add_row(
            cell(item.path.name),
            _size(item.size),
            _size(item.max_bytes),
            f"{item.backups_present}/{item.backups_allowed}",
            "yes" if item.writable else "NO",
            status,
        )
    console.print(table)
    failed = not dir_ok or any(item.problems for item in checks)
    if not dir_ok:
        console.print(f"[bold red]log directory not writable:[/] {markup(settings.log_dir)}")
    if failed:
        raise typer.Exit(code=1)


@logs_app.command("cleanup")
def cleanup_command(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would go; delete nothing."),
) -> None:
    """Delete backups older than the retention period, then the oldest above the size cap."""
    settings = settings_from(ctx)
    plan = cleanup(
        Path(settings.log_dir),
        settings.log_retention_days,
        settings.log_max_total_bytes,
        dry_run=dry_run,
    )
    # Plain lines (no wrapping): this output is read by scripts and cron mails.
    verb = "would delete" if dry_run else "deleted"
    for item in plan.doomed:
        typer.echo(f"{verb} {safe_text(item.path)} ({_size(item.size)}, {item.reason})")
    typer.echo(
        f"{verb}: {len(plan.doomed)} file(s); directory {_size(plan.total_before)} -> "
        f"{_size(plan.total_after)} (cap {_size(settings.log_max_total_bytes)})"
    )
