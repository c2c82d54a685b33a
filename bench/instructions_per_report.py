"""Instructions per fill report through the embedded pipeline, counted by valgrind.

Wall-clock rates on a shared machine move with the neighbours; instruction counts do
not. This runs the embedded pass of ``execflow bench`` (EURUSD market orders placed
through the intake, one fill report each, full logging, the db writer drained) under
``valgrind --tool=cachegrind --cache-sim=no`` twice: once placing and filling N orders,
once only placing them. The difference divided by N is the cost of one report, from the
dispatcher to the database. ``--baseline-src`` counts another source tree (e.g. a
checkout of an older commit) in the same run and prints the ratio.

The count does not move with timing: the hash seed is fixed, and no wall-clock timer
shapes the counted work (``_workload``'s doc): the db writer writes full batches of
``--batch`` (default 50; ``--reports`` must be a multiple of it), the wait for the fills
is exact, not a poll. The same tree counted twice differs by well under 0.5 %.

    python bench/instructions_per_report.py --reports 150
    python bench/instructions_per_report.py --reports 150 --baseline-src /tmp/old/src
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from _cachegrind import instructions  # bench/, first on sys.path: see its doc
from _trees import tree_env

_INNER = "EXECFLOW_INSTR_INNER"
_BATCH = 50  # DB events per db writer batch: divides the default 150 reports


def _count(src: Path | None, reports: int, batch: int, fill: bool) -> int:
    # a fixed hash seed: set and dict orders, and so the work, alike in every run
    env = tree_env(src, **{_INNER: "fill" if fill else "place", "PYTHONHASHSEED": "0"})
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, __file__, "--reports", str(reports), "--workdir", tmp]
        command += ["--batch", str(batch)]
        return instructions(command, env)


def _per_report(src: Path | None, reports: int, batch: int) -> float:
    filled = _count(src, reports, batch, True)
    return (filled - _count(src, reports, batch, False)) / reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=150)
    parser.add_argument("--batch", type=int, default=_BATCH, help="DB events per batch")
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch < 1 or args.reports % args.batch:
        parser.error("--reports must be a multiple of --batch")
    inner = os.environ.get(_INNER)
    if inner is not None:
        from _workload import fill_pass  # bench/, first on sys.path: see its doc

        fill = inner == "fill"
        asyncio.run(fill_pass(args.workdir, args.reports, 600, fill=fill, batch=args.batch))
        return
    current = _per_report(None, args.reports, args.batch)
    shape = f"{args.reports} reports, batches of {args.batch}"
    print(f"this tree: {current / 1e6:.3f} M instructions per report ({shape})")
    if args.baseline_src is not None:
        base = _per_report(args.baseline_src.resolve(), args.reports, args.batch)
        print(f"baseline:  {base / 1e6:.3f} M instructions per report ({args.baseline_src})")
        print(f"ratio this/baseline: {current / base:.3f}")


if __name__ == "__main__":
    main()
