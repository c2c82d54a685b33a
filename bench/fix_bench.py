"""What the FIX gateway hop costs: the same embedded pipeline, LP on the bus vs over FIX.

::

    .venv/bin/python bench/fix_bench.py                # 1000 orders per pass
    .venv/bin/python bench/fix_bench.py --orders 3000
    chrt -f 10 .venv/bin/python bench/fix_bench.py     # on a shared machine (root)

Each pass runs the embedded pipeline (in-memory bus and state, SQLite) with an LP that
answers every market order with one immediate fill (no latency, acks, partials, rejects
or slippage). ``bus``: the simulator consumes ``provider_requests`` and publishes the
report on the bus, in the pipeline's process. ``fix``: the same book behind a QuickFIX
acceptor in a process of its own (``--serve-lp``, as ``execflow simulate --fix-port``
serves it: a real LP is another host; under ``chrt`` it runs one real-time priority above
the pipeline, so that it is not kept waiting for a CPU by it), and the LP gateway in the
pipeline's process
(D out over 127.0.0.1, 8 back, journaled and published with confirms, market data in).

Throughput is orders per second with the intake placing as fast as it can (8 at a time),
from the first order accepted until the pipeline is idle: every fill applied and every
DB event written. (The end is not the last fill applied: with the loop saturated the db
writer falls behind, in the bus pass by thousands of events when its last fill is
applied, and a pass would be timed without work it still owes.) The bus pass's LP runs
on the pipeline's loop, the FIX pass's does not: the bus pass's rate is also given
without the loop time its LP took (its handler's CPU time, measured), and the gateway's
share is reported against that, so that only what the pipeline and the gateway cost is
counted. Latency is an order's worker ``OPEN:SUCCESS`` line minus the moment the intake
accepted it (request -> fill applied), measured with orders paced at half the FIX
pass's rate. Printed: both passes and the ratios, all measured in this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from execflow.apps.bench import percentiles, success_times
from execflow.clock import SystemClock, UuidIds
from execflow.domain.enums import Side
from execflow.logs.setup import setup_logging
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.intake import OrderIntake
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import Services, open_services
from execflow.settings import LpSession, Settings
from execflow.sim.config import LatencyModel, LpConfig
from execflow.sim.feed import DEFAULT_SYMBOLS, PriceFeed
from execflow.sim.refdata import demo_seed
from execflow.sim.runtime import Simulator
from execflow.sim.viafix import free_port

PLAIN_LP = LpConfig(latency=LatencyModel(0, 0, 0), ack_rate=0.0, slippage_rate=0.0)
IN_FLIGHT = 8
FEED_SEED = 1
READY = "fix-lp-ready"


async def _nowhere(_symbol: str, _data: dict[str, Any]) -> None:
    return None


class RemoteFixLp:
    """The LP adapter of the FIX pass: the gateway, to an acceptor in another process."""

    def __init__(self, services: Services, port: int, store_dir: Path) -> None:
        from execflow.gateway.service import LpGateway  # loads the FIX engine

        # the acceptor's feed, unstarted: the same seed gives the same first quotes
        self.feed = PriceFeed(DEFAULT_SYMBOLS, _nowhere, random.Random(FEED_SEED), SystemClock())
        session = LpSession(
            port=port,
            sender_comp_id="EXECFLOW",
            target_comp_id="SIMLP",
            store_dir=store_dir,
            symbols=self.feed.symbols,
        )
        self.gateway = LpGateway(services, "sim", session)

    async def start(self) -> None:
        """Connect, wait for the logon and a quote of every symbol."""
        await self.gateway.start()
        async with asyncio.timeout(20):
            await self.gateway.logged_on.wait()
            await self.gateway.quotes.wait_complete(self.feed.symbols)
            await self.gateway.quotes.flush()

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Log out."""
        await self.gateway.stop(drain_timeout_s)


def timed_handler(handler: Callable[[Any], Awaitable[None]], spent: list[float]) -> Any:
    """``handler`` adding its CPU time to ``spent[0]`` (it never suspends in this setup)."""

    async def run(delivery: Any) -> None:
        started = time.thread_time()
        try:
            await handler(delivery)
        finally:
            spent[0] += time.thread_time() - started

    return run


async def one_pass(
    workdir: Path, mode: str, orders: int, rate_per_s: float | None, lp_port: int | None
) -> dict[str, float]:
    """One pass; returns count, elapsed_s, rate, lp_cpu_s, p50_ms, p99_ms."""
    run_dir = workdir / f"{mode}-{'paced' if rate_per_s else 'max'}"
    run_dir.mkdir(parents=True)
    settings = Settings(
        log_dir=run_dir / "logs", database_url=f"sqlite+aiosqlite:///{run_dir / 'x.db'}"
    )
    logs = await asyncio.to_thread(setup_logging, settings, "simulator", bridge=False)
    accepted: dict[str, float] = {}
    lp_cpu_s = [0.0]
    try:
        async with open_services(settings, logs) as services:
            lp: Simulator | RemoteFixLp
            if mode == "fix":
                assert lp_port is not None
                lp = RemoteFixLp(services, lp_port, run_dir / "fix")
            else:
                lp = Simulator(
                    services.bus,
                    services.state,
                    logs.logger("simulator"),
                    PLAIN_LP,
                    tick_interval_s=3600,
                    clock=services.clock,
                )
                lp.lp._handle = timed_handler(lp.lp._handle, lp_cpu_s)  # type: ignore[method-assign]
            seed = demo_seed(20, random.Random(2), lp.feed)
            await apply_seed(seed, services.state, services.database)
            pipeline = EmbeddedPipeline(services, lp=lp, rebuild=False)
            await pipeline.start()
            intake = OrderIntake(services)
            accounts = [a.account_id for a in seed.accounts]
            gate = asyncio.Semaphore(IN_FLIGHT)
            started = time.monotonic()

            async def place(index: int) -> None:
                if rate_per_s:
                    delay = started + index / rate_per_s - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                async with gate:
                    account = accounts[index % len(accounts)]
                    result = await intake.open_market(account, "EURUSD", Side.BUY, "0.01")
                    if result.accepted and result.order_id is not None:
                        accepted[result.order_id] = time.time()

            try:
                await asyncio.gather(*(place(i) for i in range(orders)))
                log = logs.logger("worker_open")
                async with asyncio.timeout(300):
                    while True:  # every accepted order's fill applied
                        if log.stats.count("success") >= len(accepted):
                            break
                        await asyncio.sleep(0.01)
                    # ... and everything the pipeline owes for them done (DB events written)
                    await pipeline.drain(timeout_s=300)
                idle_at = time.time()
                await intake.shutdown()
            finally:
                await pipeline.stop()
    finally:
        await asyncio.to_thread(logs.close)
    done = await asyncio.to_thread(success_times, run_dir / "logs" / "worker_open.log")
    keys = [k for k in accepted if k in done]
    latencies = [(done[k] - accepted[k]) * 1000 for k in keys]
    elapsed = max(idle_at, *(done[k] for k in keys)) - min(accepted[k] for k in keys)
    p50, _p95, p99 = percentiles(latencies)
    return {
        "count": len(keys),
        "elapsed_s": elapsed,
        "rate": len(keys) / elapsed,
        "rate_without_lp": len(keys) / (elapsed - lp_cpu_s[0]),
        "lp_cpu_s": lp_cpu_s[0],
        "p50": p50,
        "p99": p99,
    }


def line(name: str, figures: dict[str, float]) -> str:
    return (
        f"  {name:<10} {figures['count']:>6.0f} orders  {figures['rate']:>8.1f} /s   "
        f"p50 {figures['p50']:>8.2f} ms   p99 {figures['p99']:>8.2f} ms"
    )


class LpProcess:
    """The FIX acceptor of the FIX passes, in a process of its own (``--serve-lp``)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> LpProcess:
        command = [sys.executable, __file__, "--serve-lp", str(self.port)]
        policy = os.sched_getscheduler(0)
        if policy in (os.SCHED_FIFO, os.SCHED_RR):
            # under chrt: one step above the pipeline's process, as if on a host of its own
            above = os.sched_getparam(0).sched_priority + 1
            command = ["chrt", "-f", str(above), *command]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != READY:
            raise RuntimeError("the FIX LP process did not start")
        return self

    def __exit__(self, *_exc: object) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def serve_lp(port: int) -> None:
    """The acceptor process: the plain LP on ``port`` until SIGTERM (a new session each pass)."""
    from execflow.sim.fixlp import FixLpSession, FixSimulator  # loads the FIX engine

    with tempfile.TemporaryDirectory(prefix="execflow-fixbench-lp-") as tmp:
        settings = Settings(log_dir=Path(tmp) / "logs")
        logs = setup_logging(settings, "simulator", bridge=False)
        simulator = FixSimulator(
            logs.logger("simulator"),
            PLAIN_LP,
            FixLpSession(port=port),
            SystemClock(),
            UuidIds(),
            seed=FEED_SEED,
            tick_interval_s=3600,
        )
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await simulator.start()
        print(READY, flush=True)
        await stop.wait()
        await simulator.stop()
        logs.close()


async def main(orders: int) -> None:
    with tempfile.TemporaryDirectory(prefix="execflow-fixbench-") as tmp:
        workdir = Path(tmp)
        bus_max = await one_pass(workdir, "bus", orders, None, None)
        with LpProcess() as lp:
            fix_max = await one_pass(workdir, "fix", orders, None, lp.port)
        half = fix_max["rate"] / 2
        bus_half = await one_pass(workdir, "bus", orders, half, None)
        with LpProcess() as lp:
            fix_half = await one_pass(workdir, "fix", orders, half, lp.port)
    print(f"execflow FIX gateway bench: {orders} market orders per pass, one fill each")
    print("maximum rate (first accepted -> pipeline idle; latency request -> fill applied):")
    print(line("bus LP", bus_max))
    print(line("FIX LP", fix_max))
    share = bus_max["lp_cpu_s"] / bus_max["elapsed_s"]
    print(
        f"  the bus LP took {bus_max['lp_cpu_s']:.2f} s of the bus pass's loop ({share:.0%}): "
        f"without it {bus_max['rate_without_lp']:.1f} /s"
    )
    print(f"half the FIX rate ({half:.1f} orders/s):")
    print(line("bus LP", bus_half))
    print(line("FIX LP", fix_half))
    ratio = fix_max["rate"] / bus_max["rate_without_lp"]
    raw_ratio = fix_max["rate"] / bus_max["rate"]
    added_p50 = fix_half["p50"] - bus_half["p50"]
    added_p99 = fix_half["p99"] - bus_half["p99"]
    print(
        f"gateway hop: throughput {ratio:.2f}x of the bus pipeline without its LP "
        f"(costs {1 - ratio:.0%}; {raw_ratio:.2f}x of the bus pass with it); "
        f"at half rate it adds p50 {added_p50:+.2f} ms, p99 {added_p99:+.2f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--serve-lp", type=int, metavar="PORT", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve_lp:
        asyncio.run(serve_lp(arguments.serve_lp))
    else:
        asyncio.run(main(arguments.orders))
