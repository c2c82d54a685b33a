"""What the FIX gateway hop costs: the same embedded pipeline, LP on the bus vs over FIX.

::

    .venv/bin/python bench/fix_bench.py                # 1000 orders per pass
    .venv/bin/python bench/fix_bench.py --orders 3000

Each pass runs the embedded pipeline (in-memory bus and state, SQLite) with an LP that
answers every market order with one immediate fill (no latency, acks, partials, rejects
or slippage). ``bus``: the simulator consumes ``provider_requests`` and publishes the
report on the bus. ``fix``: the same book behind a QuickFIX acceptor on 127.0.0.1, and
the LP gateway in between (D out, 8 back, published with confirms, market data in).

An order's latency is its worker's ``OPEN:SUCCESS`` line minus the moment the intake
accepted it (request -> fill applied). Throughput is orders applied per second with the
intake placing as fast as it can (8 at a time); latency is measured again with orders
paced at half the FIX pass's rate. Printed: both passes and the ratios (the gateway's
share of throughput, the p50 / p99 it adds), all measured in this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from execflow.apps.bench import percentiles, success_times
from execflow.domain.enums import Side
from execflow.logs.setup import setup_logging
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.intake import OrderIntake
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import open_services
from execflow.settings import Settings
from execflow.sim.config import LatencyModel, LpConfig
from execflow.sim.refdata import demo_seed
from execflow.sim.runtime import Simulator
from execflow.sim.viafix import ViaFix

PLAIN_LP = LpConfig(latency=LatencyModel(0, 0, 0), ack_rate=0.0, slippage_rate=0.0)
IN_FLIGHT = 8


async def one_pass(
    workdir: Path, mode: str, orders: int, rate_per_s: float | None
) -> dict[str, float]:
    """One pass; returns count, elapsed_s, rate, p50_ms, p99_ms."""
    run_dir = workdir / f"{mode}-{'paced' if rate_per_s else 'max'}"
    run_dir.mkdir(parents=True)
    settings = Settings(
        log_dir=run_dir / "logs", database_url=f"sqlite+aiosqlite:///{run_dir / 'x.db'}"
    )
    logs = await asyncio.to_thread(setup_logging, settings, "simulator", bridge=False)
    accepted: dict[str, float] = {}
    try:
        async with open_services(settings, logs) as services:
            lp: Simulator | ViaFix
            if mode == "fix":
                lp = ViaFix(services, PLAIN_LP, run_dir / "fix", tick_interval_s=3600)
            else:
                lp = Simulator(
                    services.bus,
                    services.state,
                    logs.logger("simulator"),
                    PLAIN_LP,
                    tick_interval_s=3600,
                    clock=services.clock,
                )
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
                        await asyncio.sleep(0.05)
                await intake.shutdown()
            finally:
                await pipeline.stop()
    finally:
        await asyncio.to_thread(logs.close)
    done = await asyncio.to_thread(success_times, run_dir / "logs" / "worker_open.log")
    keys = [k for k in accepted if k in done]
    latencies = [(done[k] - accepted[k]) * 1000 for k in keys]
    elapsed = max(done[k] for k in keys) - min(accepted[k] for k in keys)
    p50, _p95, p99 = percentiles(latencies)
    return {
        "count": len(keys),
        "elapsed_s": elapsed,
        "rate": len(keys) / elapsed,
        "p50": p50,
        "p99": p99,
    }


def line(name: str, figures: dict[str, float]) -> str:
    return (
        f"  {name:<10} {figures['count']:>6} orders  {figures['rate']:>8.1f} /s   "
        f"p50 {figures['p50']:>7.2f} ms   p99 {figures['p99']:>7.2f} ms"
    )


async def main(orders: int) -> None:
    with tempfile.TemporaryDirectory(prefix="execflow-fixbench-") as tmp:
        workdir = Path(tmp)
        bus_max = await one_pass(workdir, "bus", orders, None)
        fix_max = await one_pass(workdir, "fix", orders, None)
        half = fix_max["rate"] / 2
        bus_half = await one_pass(workdir, "bus", orders, half)
        fix_half = await one_pass(workdir, "fix", orders, half)
    print(f"execflow FIX gateway bench: {orders} market orders per pass, one fill each")
    print("maximum rate (request -> fill applied):")
    print(line("bus LP", bus_max))
    print(line("FIX LP", fix_max))
    print(f"half the FIX rate ({half:.1f} orders/s):")
    print(line("bus LP", bus_half))
    print(line("FIX LP", fix_half))
    ratio = fix_max["rate"] / bus_max["rate"]
    added_p50 = fix_half["p50"] - bus_half["p50"]
    added_p99 = fix_half["p99"] - bus_half["p99"]
    print(
        f"gateway hop: throughput {ratio:.2f}x of the bus LP (costs {1 - ratio:.0%}); "
        f"at half rate it adds p50 {added_p50:+.2f} ms, p99 {added_p99:+.2f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=1000)
    asyncio.run(main(parser.parse_args().orders))
