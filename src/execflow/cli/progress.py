"""Progress of long commands: a Rich bar on stderr, only for a person at a terminal.

Off when stderr is not a terminal (a pipe, a file, CI) and with the root option
``--quiet``; stdout keeps only the command's result either way, so
``execflow logs stats --json | jq`` reads the same with or without a bar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from execflow.cli.context import CliState

__all__ = [
    "PhaseProgress",
    "ScanBar",
    "phase_progress",
    "quiet",
    "scan_progress",
    "stderr_bar",
    "step_progress",
]


def quiet(ctx: typer.Context) -> bool:
    """True when the root command was given ``--quiet``."""
    state = ctx.find_root().obj
    return isinstance(state, CliState) and state.quiet


def stderr_bar(ctx: typer.Context) -> Console | None:
    """The stderr console a bar may be drawn on, or ``None`` (not a terminal, ``--quiet``)."""
    console = Console(stderr=True)
    if quiet(ctx) or not console.is_terminal:
        return None
    return console


class ScanBar:
    """A byte-counting bar for log scans (``execflow.logtools.scan.ScanProgress``)."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task
        self._total = 0

    def planned(self, total_bytes: int) -> None:
        """Another scan of ``total_bytes`` starts (a report makes three)."""
        self._total += total_bytes
        self._progress.update(self._task, total=self._total)

    def advanced(self, done_bytes: int) -> None:
        """A file of ``done_bytes`` was read."""
        self._progress.advance(self._task, done_bytes)


@contextmanager
def scan_progress(ctx: typer.Context, description: str) -> Iterator[ScanBar | None]:
    """A bar of bytes read while the block runs, or ``None`` when no bar is wanted."""
    console = stderr_bar(ctx)
    if console is None:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        yield ScanBar(bar, bar.add_task(description, total=None))


PhaseProgress = Callable[[str, int, int], None]
"""``(phase, done, total)``: the scenario driver's progress callback."""


@contextmanager
def phase_progress(ctx: typer.Context, phases: dict[str, str]) -> Iterator[PhaseProgress | None]:
    """One bar per phase (``{phase: description}``), fed by ``(phase, done, total)`` calls."""
    console = stderr_bar(ctx)
    if console is None or not phases:
        yield None
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks = {phase: bar.add_task(text, total=None) for phase, text in phases.items()}

        def update(phase: str, done: int, total: int) -> None:
            bar.update(tasks[phase], completed=done, total=total)

        yield update


@contextmanager
def step_progress(ctx: typer.Context) -> Iterator[Callable[[str], None] | None]:
    """A spinner naming the current step (``bench``'s passes), or ``None``."""
    console = stderr_bar(ctx)
    if console is None:
        yield None
        return
    with console.status("starting") as status:

        def step(text: str) -> None:
            status.update(text)

        yield step
