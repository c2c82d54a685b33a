"""CPU per fill report by the account's size: 1, 100 and 1,000 open positions (issue 14).

The embedded pipeline (in-memory bus and state, SQLite, full logging, no LP) on the demo
seed's 20 accounts, each first given N open positions spread over four symbols and both
sides (written through the state store's port, not traded: setting them up is not what is
measured). Then ``--reports`` EURUSD market orders are placed through the intake, round
robin over the accounts, and one fill report per order is published; the CPU time of the
process (``time.process_time``: every thread, SQLite's included) from the first publish
until every fill is applied and the db writer has drained, divided by the reports, is the
cost of one report. Each account grows by reports / 20 positions during the pass.

Each size runs in a fresh process, ``--repeat`` times alternating the sizes; the median
is printed, and the ratio of the largest size to the smallest. ``--instructions`` counts
instructions under ``valgrind --tool=cachegrind`` instead (a pass with the fills minus
one that only places the orders, per report): they do not move with the neighbours.
``--baseline-src`` measures another source tree (e.g. a checkout of an older commit) in
the same run.

    python bench/account_size.py
    python bench/account_size.py --baseline-src /tmp/old/src
    python bench/account_size.py --instructions --reports 100 --sizes 1,1000
    python bench/account_size.py --held reservations --baseline-src /tmp/old/src

``--held reservations`` pads the accounts with margin reservations of orders in flight
(pending orders) instead of positions: each fill releases its own order's reservation
beside the N others, as a fill on an account with N pending orders does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _cachegrind import instructions  # bench/, first on sys.path: see its doc
from _trees import run_child, tree_env

_INNER = "EXECFLOW_ACCOUNT_SIZE_INNER"
_CPU = re.compile(r"cpu_s=([\d.]+)")
_SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "EURGBP")


async def _pad_accounts(services: object, accounts: list[str], size: int, held: str) -> None:
    """Give each account ``size`` open positions, or margin reservations of orders in
    flight (``held``), and a balance that carries their margin."""
    from dataclasses import replace
    from decimal import Decimal

    from execflow.backends.state import Write
    from execflow.domain.accounting import with_margins
    from execflow.domain.codec import account_from_dict, account_to_dict
    from execflow.domain.enums import Side
    from execflow.domain.models import Position, Reservation

    state = services.state  # type: ignore[attr-defined]
    for account_id in accounts:
        doc = await state.get_account(account_id)
        account = account_from_dict(doc.data)
        positions, reservations = account.positions, account.reservations
        if held == "reservations":
            reservations += tuple(
                Reservation(f"pre-{account_id}-{n:05d}", Decimal("12.34")) for n in range(size)
            )
        else:
            positions = tuple(
                Position(
                    f"pre-{account_id}-{n:05d}",
                    _SYMBOLS[n % len(_SYMBOLS)],
                    Side.BUY if n % 3 else Side.SELL,
                    Decimal("0.10"),
                    Decimal("1085.01"),
                )
                for n in range(size)
            )
        padded = with_margins(account, positions, reservations, Decimal("1000000000.00"))
        padded = replace(padded, version=doc.version + 1)
        await state.commit(
            account_id, [Write("account", account_id, doc.version, account_to_dict(padded))]
        )


async def _pass(
    workdir: Path, size: int, reports: int, fill: bool, held: str, timeout_s: float
) -> float:
    """One pass; the CPU seconds of the fills (0 when ``fill`` is false)."""
    from execflow.apps.bench import place_orders, publish_fills, seed_reference_data, wait_for
    from execflow.logs import setup_logging
    from execflow.pipeline.embedded import EmbeddedPipeline
    from execflow.pipeline.services import open_services
    from execflow.settings import Settings

    settings = Settings(
        log_dir=workdir / "logs",
        log_level="INFO",
        database_url=f"sqlite+aiosqlite:///{workdir / 'execflow.db'}",
    )
    logs = await asyncio.to_thread(setup_logging, settings, "simulator", bridge=False)
    cpu_s = 0.0
    try:
        async with open_services(settings, logs) as services:
            seeded = await seed_reference_data(services)
            await _pad_accounts(services, seeded[0], size, held)
            placed = await place_orders(services, reports, seeded)
            if len(placed) != reports:
                raise SystemExit(f"only {len(placed)} of {reports} orders accepted")
            pipeline = EmbeddedPipeline(services, rebuild=False)
            await pipeline.start()
            try:
                await pipeline.drain(timeout_s=timeout_s)
                if fill:
                    log = logs.logger("worker_open")
                    started = time.process_time()
                    await publish_fills(services.bus, placed, None, "size")

                    async def opened() -> bool:
                        return log.stats.count("success") >= len(placed)

                    await wait_for(opened, timeout_s)
                    await pipeline.drain(timeout_s=timeout_s)
                    cpu_s = time.process_time() - started
            finally:
                await pipeline.stop()
    finally:
        await asyncio.to_thread(logs.close)
    return cpu_s


def _argv(size: int, reports: int, workdir: str, held: str) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--sizes",
        str(size),
        "--reports",
        str(reports),
        "--workdir",
        workdir,
        "--held",
        held,
    ]


def _cpu_per_report(src: Path | None, size: int, reports: int, held: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = run_child(_argv(size, reports, tmp, held), tree_env(src, **{_INNER: "fill"}))
    match = _CPU.search(out)
    if match is None:
        raise SystemExit(f"pass printed no CPU figure:\n{out[-2000:]}")
    return float(match.group(1)) / reports


def _instructions(src: Path | None, size: int, reports: int, fill: bool, held: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        env = tree_env(src, **{_INNER: "fill" if fill else "place"})
        return instructions(_argv(size, reports, tmp, held), env)


def _instructions_per_report(src: Path | None, size: int, reports: int, held: str) -> float:
    filled = _instructions(src, size, reports, True, held)
    return (filled - _instructions(src, size, reports, False, held)) / reports


def _measure(src: Path | None, sizes: list[int], args: argparse.Namespace) -> dict[int, float]:
    if args.instructions:
        return {
            size: _instructions_per_report(src, size, args.reports, args.held) for size in sizes
        }
    runs: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(args.repeat):
        for size in sizes:
            runs[size].append(_cpu_per_report(src, size, args.reports, args.held))
    return {size: statistics.median(values) for size, values in runs.items()}


def _print(label: str, figures: dict[int, float], instructions: bool, what: str) -> None:
    print(f"{label}:")
    for size, value in figures.items():
        shown = f"{value / 1e6:.3f} M instructions" if instructions else f"{value * 1e3:.3f} ms CPU"
        print(f"  {size:5d} {what}: {shown} per report")
    small, large = min(figures), max(figures)
    print(f"  ratio {large}/{small}: {figures[large] / figures[small]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--sizes", default="1,100,1000", help="items held per account")
    parser.add_argument(
        "--held",
        choices=("positions", "reservations"),
        default="positions",
        help="pad the accounts with open positions or with reservations of orders in flight",
    )
    parser.add_argument("--repeat", type=int, default=3, help="passes per size (median)")
    parser.add_argument("--instructions", action="store_true", help="count under cachegrind")
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    inner = os.environ.get(_INNER)
    if inner is not None:
        fill = inner == "fill"
        cpu_s = asyncio.run(_pass(args.workdir, sizes[0], args.reports, fill, args.held, 600))
        print(f"cpu_s={cpu_s:.6f}")
        return
    unit = "instructions" if args.instructions else "CPU"
    what = "open positions" if args.held == "positions" else "reservations held"
    print(f"{unit} per fill report, {args.reports} reports over 20 accounts, by {what}")
    current = _measure(None, sizes, args)
    _print("this tree", current, args.instructions, what)
    if args.baseline_src is not None:
        base = _measure(args.baseline_src.resolve(), sizes, args)
        _print(f"baseline ({args.baseline_src})", base, args.instructions, what)
        for size in sizes:
            print(f"  this/baseline at {size}: {current[size] / base[size]:.3f}")


if __name__ == "__main__":
    main()
