"""Instructions per fill report through the embedded pipeline, counted by valgrind.

Wall-clock rates on a shared machine move with the neighbours; instruction counts do
not. This runs the embedded pass of ``execflow bench`` (EURUSD market orders placed
through the intake, one fill report each, full logging, the db writer drained) under
``valgrind --tool=cachegrind --cache-sim=no`` twice: once placing and filling N orders,
once only placing them. The difference divided by N is the cost of one report, from the
dispatcher to the database. ``--baseline-src`` counts another source tree (e.g. a
checkout of an older commit) in the same run and prints the ratio.

    python bench/instructions_per_report.py --reports 300
    python bench/instructions_per_report.py --reports 300 --baseline-src /tmp/old/src
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from _cachegrind import instructions  # bench/, first on sys.path: see its doc

_INNER = "EXECFLOW_INSTR_INNER"


def _count(src: Path | None, reports: int, fill: bool) -> int:
    env = {**os.environ, _INNER: "fill" if fill else "place"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, __file__, "--reports", str(reports), "--workdir", tmp]
        return instructions(command, env)


def _per_report(src: Path | None, reports: int) -> float:
    return (_count(src, reports, True) - _count(src, reports, False)) / reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=300)
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    inner = os.environ.get(_INNER)
    if inner is not None:
        from _workload import fill_pass  # bench/, first on sys.path: see its doc

        asyncio.run(fill_pass(args.workdir, args.reports, 600, fill=inner == "fill"))
        return
    current = _per_report(None, args.reports)
    print(f"this tree: {current / 1e6:.3f} M instructions per report ({args.reports} reports)")
    if args.baseline_src is not None:
        base = _per_report(args.baseline_src.resolve(), args.reports)
        print(f"baseline:  {base / 1e6:.3f} M instructions per report ({args.baseline_src})")
        print(f"ratio this/baseline: {current / base:.3f}")


if __name__ == "__main__":
    main()
