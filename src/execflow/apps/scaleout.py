"""Scale-out: the distributed pass with N instances of each process, for several N.

``execflow bench --instances 1,2,4`` runs, for each traffic shape and each N, one
distributed max-rate pass (``apps.bench.distributed_pass``) with N processes each of
the dispatcher, worker open and db writer sharing their queues, and reports reports/s,
CPU milliseconds per report summed over every process (the servers included) and the
workers' ``VERSION_CONFLICT`` lines per report. Two traffic shapes: *spread* (the orders
round robin over many accounts: conflicts are rare) and *hot* (every order on a few
accounts: concurrent reports of one account collide on its compare-and-set commit and
are applied again). A hot account also grows large (it holds every position of the
pass), so part of its cost per report is the account's size (issue 14, target 1).

Each pass first samples its processes and servers idle for ``idle_sample_s`` (orders
placed, nothing sent): the shared RabbitMQ and Redis keep serving other clients during
the pass, and ``RunFigures.net_cpu_ms_per_report`` takes that rate back out.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from execflow.apps.bench import BenchConfig, RunFigures, Topology, bench_database, distributed_pass
from execflow.errors import ExecflowError

__all__ = ["ScaleOutResult", "ScaleOutRow", "Shape", "parse_instances", "run_scale_out"]


@dataclass(frozen=True, slots=True)
class Shape:
    """A traffic shape: its name and how many accounts the orders go to."""

    name: str
    accounts: int


@dataclass(frozen=True, slots=True)
class ScaleOutRow:
    """One pass: a shape at N instances."""

    shape: Shape
    instances: int
    figures: RunFigures

    @property
    def conflicts_per_report(self) -> float:
        """``VERSION_CONFLICT`` lines per applied report."""
        reports = self.figures.reports
        return (self.figures.conflicts or 0) / reports if reports else 0.0


@dataclass
class ScaleOutResult:
    """Every pass of one ``--instances`` run, in the order run."""

    rows: list[ScaleOutRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_instances(values: Sequence[str]) -> tuple[int, ...]:
    """``["1,2", "4"]`` -> ``(1, 2, 4)``: comma lists and repeated options, each >= 1."""
    found: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            number = int(part)  # ValueError for a non-number: the CLI reports it
            if number < 1:
                raise ValueError(f"instances must be >= 1, not {number}")
            if number not in found:
                found.append(number)
    if not found:
        raise ValueError("no instance count given")
    return tuple(found)


async def run_scale_out(
    config: BenchConfig,
    instances: Sequence[int],
    shapes: Sequence[Shape],
    progress: Callable[[str], None] = print,
    idle_sample_s: float = 5.0,
) -> ScaleOutResult:
    """One max-rate distributed pass per shape and N, each in a throwaway database."""
    config = replace(config, idle_sample_s=idle_sample_s)
    result = ScaleOutResult()
    workdir = Path(tempfile.mkdtemp(prefix="execflow-scaleout-"))
    try:
        for shape in shapes:
            for count in instances:
                progress(
                    f"{shape.name} ({shape.accounts} accounts), {count} instance(s) each, "
                    f"{config.distributed_reports} reports"
                )
                label = f"{shape.name}{count}"
                topology = Topology(instances=count, accounts=shape.accounts)
                try:
                    # a database per pass: a hot account's positions of an earlier pass
                    # would otherwise be in the next one's database (and its margin)
                    async with bench_database(config) as database:
                        figures = await distributed_pass(
                            config, database, workdir / label, label, None, topology
                        )
                except (ExecflowError, OSError, TimeoutError) as exc:
                    result.notes.append(
                        f"{shape.name} at {count} instance(s) failed: {type(exc).__name__}: {exc}"
                    )
                    continue
                result.rows.append(ScaleOutRow(shape, count, figures))
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    return result
