"""RSS of each pipeline process after warm-up, beside a bare interpreter's (issue 14, "Memory").

Starts ``execflow run db-writer``, ``run worker open`` and ``run dispatcher`` as
processes on the local RabbitMQ, Redis and PostgreSQL (a throwaway database, unique
queue and key prefixes), sends ``--reports`` fills through them (the warm-up: every
report applied), then prints each process's RSS and that of ``python -c`` running
nothing, started from the same interpreter::

    python bench/memory.py
    python bench/memory.py --reports 500
    # another checkout's code in the pipeline processes (this one drives them):
    python bench/memory.py --child-pythonpath /path/to/other/src

The pass is ``execflow bench``'s distributed max-rate pass with fewer reports; the
figures are docs/benchmarks.md's "Memory" section.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import typer

from execflow.apps.bench import (
    DEFAULT_AMQP_URL,
    DEFAULT_POSTGRES_ADMIN_URL,
    DEFAULT_REDIS_URL,
    BenchConfig,
    distributed_passes,
    machine,
)


def main(
    reports: int = typer.Option(300, min=10, help="Fills sent through before measuring."),
    amqp_url: str = typer.Option(DEFAULT_AMQP_URL, help="RabbitMQ."),
    redis_url: str = typer.Option(DEFAULT_REDIS_URL, help="Redis (a key prefix is added)."),
    postgres_admin_url: str = typer.Option(
        DEFAULT_POSTGRES_ADMIN_URL, help="PostgreSQL admin DSN (a database is created)."
    ),
    child_pythonpath: str = typer.Option(
        "", help="PYTHONPATH of the pipeline processes (another checkout's src)."
    ),
) -> None:
    """Print the RSS of each pipeline process after warm-up and of a bare interpreter."""
    config = BenchConfig(
        distributed_reports=reports,
        amqp_url=amqp_url,
        redis_url=redis_url,
        postgres_admin_url=postgres_admin_url,
        child_env=(("PYTHONPATH", child_pythonpath),) if child_pythonpath else (),
    )
    workdir = Path(tempfile.mkdtemp(prefix="execflow-memory-"))
    try:
        passes = asyncio.run(distributed_passes(config, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for label, figures in zip(("max rate", "half rate"), passes, strict=True):
        print(f"after {figures.reports} reports at {label} ({figures.rate:,.0f} reports/s):")
        for line in figures.memory.lines() if figures.memory else ["(not measured)"]:
            print(f"  {line}")
    print(f"machine: {machine()}")


if __name__ == "__main__":
    typer.run(main)
