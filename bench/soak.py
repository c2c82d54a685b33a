"""Soak: the distributed pipeline for N minutes with a messy LP, watched and reconciled.

::

    .venv/bin/python bench/soak.py --minutes 30          # the issue's soak (not in CI)
    .venv/bin/python bench/soak.py --minutes 2           # what the CI test runs

Starts ``execflow run all`` (dispatcher, seven workers, db writer as processes) on the
local RabbitMQ, Redis and PostgreSQL (a fresh database, unique queue and key prefixes),
and ``execflow simulate`` placing orders at half the maximum rate for ``--minutes``,
with 5 % duplicate reports, 5 % reordered and 2 % malformed. Every ``--every`` seconds
it prints the RSS of every process; at the end the reconciliation verdict (confirmed,
lost, applied twice, DLQ by reason, ``execflow reconcile``), each process's RSS growth
after warm-up (first quarter) and the longest gap between ``[STATS]`` lines per log file
(the contract: one at least every 5 minutes). Exit 0 when everything holds.

RSS is judged while the scenario trades (up to ``orders / rate`` seconds, which the
driver never beats): afterwards the simulator process closes every order and reconciles
the whole run against the database, a one-off whose memory grows with the run's length
(it is printed as ``after``, not judged). The pipeline's processes are judged on the
whole run as well.

``--max-rate`` is the order rate this pipeline sustains on the machine (orders/s); the
default, 40, was measured on the shared 2-core CI box (about 70 reports/s end to end).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.backends.conftest import fresh_pg_database
from tests.faults.harness import CHILDREN, PipelineRun, RunConfig, Verdict

STATS_GAP_LIMIT_S = 300.0 + 30.0  # every 5 minutes, plus the time a busy box takes
RSS_GROWTH_LIMIT = 0.5  # after warm-up, no process grows by half again
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6})Z ")


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MiB (None when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(found.group(1)) / 1024 if found else None


def processes(run: PipelineRun) -> dict[str, int]:
    """Name -> pid of every process of the run (latest incarnation)."""
    out = {}
    for name in CHILDREN:
        try:
            out[name] = run.child_pid(name)
        except (LookupError, OSError):
            continue
    if run.driver is not None:
        out["simulator"] = run.driver.pid
    if run.supervisor is not None:
        out["supervisor"] = run.supervisor.pid
    return out


def stats_gaps(log_dir: Path) -> dict[str, float]:
    """Per log file: the longest time between consecutive ``[STATS]`` lines (s)."""
    gaps: dict[str, float] = {}
    for path in sorted(log_dir.glob("*.log")):
        times = []
        for line in path.read_text(errors="replace").splitlines():
            if "[STATS]" in line and (found := _TIME.match(line)):
                times.append(datetime.fromisoformat(found.group(1)).timestamp())
        if len(times) >= 2:
            gaps[path.name] = max(b - a for a, b in itertools.pairwise(times))
    return gaps


Series = dict[str, list[tuple[float, float]]]
"""Process name -> (seconds since the watch started, RSS MiB) samples."""
AFTER_TRADING = ("simulator",)  # its closing reconcile loads the whole run: not judged


async def watch(run: PipelineRun, every_s: float, table: Series) -> None:
    """Print one RSS line per ``every_s`` until cancelled."""
    started = time.monotonic()
    header_done = False
    while True:
        pids = await asyncio.to_thread(processes, run)
        if not header_done and pids:
            print("t_s     " + " ".join(f"{n[:12]:>12}" for n in pids), flush=True)
            header_done = True
        row = []
        elapsed_s = time.monotonic() - started
        for name, pid in pids.items():
            value = rss_mb(pid)
            if value is not None:
                table.setdefault(name, []).append((elapsed_s, value))
            row.append(f"{value:12.1f}" if value is not None else f"{'-':>12}")
        print(f"{elapsed_s:6.0f}  " + " ".join(row), flush=True)
        await asyncio.sleep(every_s)


def growth(series: list[float]) -> float:
    """RSS growth from the end of warm-up (first quarter) to the end, as a share."""
    if len(series) < 4:
        return 0.0
    warm = series[len(series) // 4]
    return (series[-1] - warm) / warm if warm else 0.0


def report(verdict: Verdict, table: Series, gaps: dict[str, float], trading_s: float) -> bool:
    """Print the verdict; True when everything holds."""
    row = verdict.row()
    print()
    print(
        f"confirmed={row['confirmed']} applied={verdict.applied} lost={row['lost']} "
        f"applied_twice={row['applied_twice']} dlq={row['dlq']} {row['dlq_reasons']} "
        f"ignored_or_stale={verdict.ignored_or_stale}"
    )
    reconciled = verdict.reconcile_exit == 0
    print(f"reconciliation: {'clean' if reconciled else 'DIFFERENCES'}")
    print(verdict.reconcile_output.strip()[-600:])
    print(f"driver exit={verdict.driver_exit}: {verdict.driver_output.strip()[-400:]}")
    print(f"RSS MiB after warm-up -> end of trading at {trading_s:.0f} s (growth); "
          "after: the last sample, growth from warm-up:")  # fmt: skip
    flat = True
    for name, samples in sorted(table.items()):
        trading = [rss for at_s, rss in samples if at_s <= trading_s]
        if len(trading) < 4:
            continue
        whole = [rss for _at_s, rss in samples]
        share, share_whole = growth(trading), growth(whole)
        judged = share <= RSS_GROWTH_LIMIT
        if name not in AFTER_TRADING:
            judged = judged and share_whole <= RSS_GROWTH_LIMIT
        flat = flat and judged
        warm = trading[len(trading) // 4]
        note = "" if name not in AFTER_TRADING else "  (after: settle + closing reconcile)"
        print(f"  {name:<18} {warm:7.1f} -> {trading[-1]:7.1f}  ({share:+.1%})"
              f"   after {whole[-1]:7.1f} ({share_whole:+.1%}){note}")  # fmt: skip
    longest = max(gaps.values(), default=0.0)
    stats_ok = bool(gaps) and longest <= STATS_GAP_LIMIT_S
    print(f"STATS lines: {len(gaps)} files, longest gap {longest:.1f} s "
          f"({'ok' if stats_ok else 'TOO LONG'}, limit {STATS_GAP_LIMIT_S:.0f} s)")  # fmt: skip
    ok = (
        reconciled
        and not verdict.lost
        and not verdict.applied_twice
        and verdict.driver_exit == 0
        and flat
        and stats_ok
    )
    print(f"soak: {'PASS' if ok else 'FAIL'}")
    return ok


async def soak(args: argparse.Namespace) -> bool:
    rate = args.max_rate / 2
    orders = max(1, int(rate * 60 * args.minutes))
    config = RunConfig(
        orders=orders,
        rate_per_s=rate,
        accounts=args.accounts,
        duplicate_rate=0.05,
        reorder_rate=0.05,
        malformed_rate=0.02,
        settle_timeout_s=120.0,
    )
    print(f"soak: {args.minutes} min, {orders} orders at {rate:g}/s (half of {args.max_rate:g}), "
          "5 % duplicates, 5 % reordered, 2 % malformed", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="execflow-soak-") as root:
        async with fresh_pg_database() as pg_url:
            run = PipelineRun(Path(root), pg_url, config)
            table: Series = {}
            watcher: asyncio.Task[None] | None = None
            try:
                await run.start()
                watcher = asyncio.create_task(watch(run, args.every, table))
                verdict = await run.verify("soak")
            finally:
                if watcher is not None:
                    watcher.cancel()
                await run.stop()
                await run.cleanup()
            gaps = await asyncio.to_thread(stats_gaps, run.log_dir)
            return report(verdict, table, gaps, trading_s=orders / rate)


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--max-rate", type=float, default=40.0, help="orders/s sustained")
    parser.add_argument("--accounts", type=int, default=40)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between RSS lines")
    ok = asyncio.run(soak(parser.parse_args()))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
