"""What the FIX gateway hop costs: the same embedded pipeline, LP on the bus vs over FIX.

::

    .venv/bin/python bench/fix_bench.py                # 1000 orders per pass
    .venv/bin/python bench/fix_bench.py --orders 3000
    chrt -f 10 .venv/bin/python bench/fix_bench.py     # on a shared machine (root)
    .venv/bin/python bench/fix_bench.py --instructions 100,300   # cachegrind counts
    .venv/bin/python bench/fix_bench.py --gateway-process  # the gateway as its own process

Each pass runs the embedded pipeline (in-memory bus and state, SQLite) with an LP that
answers every market order with one immediate fill (no latency, acks, partials, rejects
or slippage). ``bus``: the simulator consumes ``provider_requests`` and publishes the
report on the bus, in the pipeline's process. ``fix``: the same book behind a QuickFIX
acceptor in a process of its own (``--serve-lp``, as ``execflow simulate --fix-port``
serves it: a real LP is another host; under ``chrt`` it runs one real-time priority above
the pipeline, so that it is not kept waiting for a CPU by it), and the LP gateway in the
pipeline's process
(D out over 127.0.0.1, 8 back, journaled and published with confirms, market data in).

CPUs: a real LP is another host, so the simulated LP's CPU must not be taken from the
pipeline's. By default (the embedded shape, two cores or more) the last core is kept for
the FIX LP's process and the pipeline's process, every thread of it, runs on the others,
in both passes alike: the bus pass's LP runs on the pipeline's loop and its handler's time
is taken out, the FIX pass's on its own core. ``--shared-cores`` lets every process run on
every core (the figures before 2026-12-07, session 18: there the FIX LP, one real-time
priority above, took its 0.4-0.6 ms of CPU per order from the pipeline's cores, which only
the FIX pass paid for). ``--gateway-process`` always shares them (RabbitMQ and Redis run
on them too).

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
pass's rate. ``--repeat K`` runs K pairs of each (bus then FIX, alternating, so that a
slow spell of the host hits both): the throughput ratio is then the pairs' median, half
rate is half the FIX passes' median rate, and the paced passes' orders are also pooled.
Printed: both passes and the ratios, all measured in this one run, and the
CPU time per order of the pipeline's process in each max-rate pass (the bus LP's handler
left out; the FIX LP's process counted apart): CPU time is not the neighbours' share of
the machine, as wall-clock rates are, but it still moves with them (caches, frequency).

``--instructions N1,N2`` counts instead (valgrind ``cachegrind --cache-sim=no``, the same
whatever the neighbours do) the instructions of the pipeline's process per order: with
the FIX gateway (the LP in its own process, not counted) and without any LP (the orders
placed, then one fill report per order published to ``reports`` by the bench, as
``bench/instructions_per_report.py`` does), each run with N1 and N2 orders, so that
start-up cancels out: (count(N2) - count(N1)) / (N2 - N1).

``--gateway-process`` measures the hop in the deployment's shape (DESIGN §10): the same
embedded pipeline process, but on RabbitMQ and Redis (127.0.0.1, guest/guest; each pass
its own queue and key prefix, removed at its end) and SQLite, with nothing of the LP side
in it. ``bus``: the plain LP consuming ``provider_requests`` in a process of its own
(``--serve-bus-lp``). ``fix``: ``execflow run lp-gateway --lp sim``, its settings in
``EXECFLOW_*`` variables as a broker would set them (the same bus, state store and
database), to the acceptor process above. Printed: the same rates and latencies, the
ratio FIX / bus (no LP time to take out: neither LP runs in the pipeline's process), and
the CPU per order of each process. Not with ``--stages`` (the gateway's methods are in
another process).

With ``--gateway-process``, ``--instructions`` counts the deployed pipeline's process
with the bus LP's process and with the gateway's (both outside valgrind): what the
gateway, moved out, still costs the pipeline's process.

``--stages`` prints, for the paced FIX pass, p50 / p99 of each hop of each order, matched
by ClOrdID (intake accepted, D sent, the acceptor's engine callback, its loop, the 8
handed to its engine, the gateway's engine callback, its loop, published, quality fold
done, fill applied): the bench wraps the gateway's and the acceptor's methods at each
hand-over and takes ``time.time()`` (one host); the acceptor's process writes its marks
to a file at its stop. ``--half-rate R`` runs only the paced passes, at R orders/s (the
same rate for runs to be compared). ``--switch-interval MS`` / ``--lp-switch-interval
MS`` set ``sys.setswitchinterval`` in the pipeline's / the acceptor's process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _cachegrind as cachegrind  # bench/, first on sys.path: see its doc
from _lp_processes import (  # bench/, first on sys.path: see _workload's doc
    FEED_SEED,
    PLAIN_LP,
    READY,
    STAGES_ENV,
    LpProcess,
    ProcessLp,
    Servers,
    cores_text,
    deployed_backends,
    keep_core_for_lp,
    lp_feed,
    serve_bus_lp,
)
from _workload import fill_pass  # bench/, first on sys.path: see its doc
from execflow.apps.bench import cleanup_pass, percentiles, success_times
from execflow.clock import SystemClock, UuidIds
from execflow.domain.enums import Side
from execflow.logs.setup import setup_logging
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.intake import OrderIntake
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import Services, open_services
from execflow.settings import LpSession, Settings
from execflow.sim.refdata import demo_seed
from execflow.sim.runtime import Simulator

IN_FLIGHT = 8


class StageTimes:
    """``--stages``: wall-clock times (``time.time()``, one host) of each order's hops.

    Kept per ClOrdID (the lifecycle id) by wrapping, in this bench only, the gateway's and
    the acceptor's methods at each hand-over: the code measured is the code that runs.
    """

    def __init__(self) -> None:
        self.at: dict[str, dict[str, float]] = {}

    def mark(self, clordid: str | None, stage: str) -> None:
        if clordid:
            self.at.setdefault(clordid, {}).setdefault(stage, time.time())

    def wrap(
        self,
        owner: Any,
        name: str,
        stage: str,
        key: Callable[..., str | None],
        after: str | None = None,
    ) -> None:
        inner = getattr(owner, name)

        def run(*args: Any) -> Any:
            clordid = key(*args)
            self.mark(clordid, stage)
            try:
                return inner(*args)
            finally:
                if after is not None:
                    self.mark(clordid, after)

        setattr(owner, name, run)


def add_stage_ends(
    stages: StageTimes | None,
    order_of: dict[str, str],
    accepted: dict[str, float],
    done: dict[str, float],
) -> None:
    """Each order's intake-accepted and fill-applied times, by its lifecycle id."""
    if stages is None:
        return
    for clordid, at in stages.at.items():
        order_id = order_of.get(clordid)
        if order_id is not None and order_id in accepted and order_id in done:
            at["accepted"] = accepted[order_id]
            at["applied"] = done[order_id]


def _fields_clordid(_msg_type: str, fields: Any) -> str | None:
    from execflow.gateway.fixmap import first

    return first(fields, 11)


def _raw_clordid(_msg_type: str, raw: str) -> str | None:
    from execflow.gateway.fixmap import raw_field

    return raw_field(raw, 11)


def instrument_gateway(gateway: Any, stages: StageTimes, order_of: dict[str, str]) -> None:
    """Stage marks on the gateway: send, engine callback, on the loop, published."""
    stages.wrap(gateway, "_send", "gw_send", _fields_clordid)
    stages.wrap(gateway, "on_received", "gw_engine_cb", _raw_clordid)
    publisher = gateway.reports
    stages.wrap(publisher, "_arrived", "gw_on_loop", lambda entry: _raw_clordid("", entry.raw))
    stages.wrap(
        publisher,
        "_report_received",
        "gw_published",
        lambda _t, fields, _d, _r: _fields_clordid("", fields),
        after="gw_folded",
    )
    inner = gateway._log_sent

    def log_sent(request: Any, msg_type: str, started: float) -> None:
        order_of[request.lifecycle_id] = request.order_id
        inner(request, msg_type, started)

    gateway._log_sent = log_sent


def instrument_lp(server: Any, stages: StageTimes) -> None:
    """Stage marks on the acceptor: engine callback, on its loop, report handed to its engine."""
    stages.wrap(server, "engine_received", "lp_engine_cb", _fields_clordid)
    stages.wrap(server, "_on_message", "lp_on_loop", _fields_clordid)
    stages.wrap(
        server,
        "_send",
        "lp_report_sent",
        lambda msg_type, body: _fields_clordid("", body) if msg_type == "8" else None,
    )


STAGE_ORDER = (
    ("accepted", "gw_send", "intake accepted -> gateway sends D (pipeline + bus + gateway)"),
    ("gw_send", "lp_engine_cb", "D sent -> LP engine's callback (TCP, LP engine thread, LP GIL)"),
    ("lp_engine_cb", "lp_on_loop", "LP callback -> LP's loop (LP hand-over)"),
    ("lp_on_loop", "lp_report_sent", "LP's loop -> 8 handed to LP engine (LP book, task)"),
    ("lp_report_sent", "gw_engine_cb", "8 sent -> gateway engine's callback (TCP, engine, GIL)"),
    ("gw_engine_cb", "gw_on_loop", "gateway callback -> gateway's loop (journal, hand-over)"),
    ("gw_on_loop", "gw_published", "on the loop -> published with confirms"),
    ("gw_published", "gw_folded", "published -> quality fold and log line done (gateway)"),
    ("gw_folded", "applied", "gateway done -> fill applied (dispatcher, worker)"),
)


def stage_lines(stages: dict[str, dict[str, float]]) -> list[str]:
    """p50 / p99 of each stage, and the share of the end-to-end time."""
    out = []
    for start, end, text in STAGE_ORDER:
        spans = [(t[end] - t[start]) * 1000 for t in stages.values() if start in t and end in t]
        p50, _p95, p99 = percentiles(spans)
        out.append(f"    {p50:>7.3f} {p99:>8.3f} ms  {text}")
    return out


class RemoteFixLp:
    """The LP adapter of the FIX pass: the gateway, to an acceptor in another process."""

    def __init__(
        self,
        services: Services,
        port: int,
        store_dir: Path,
        stages: StageTimes | None = None,
        order_of: dict[str, str] | None = None,
    ) -> None:
        from execflow.gateway.service import LpGateway  # loads the FIX engine

        self.feed = lp_feed()
        session = LpSession(
            port=port,
            sender_comp_id="EXECFLOW",
            target_comp_id="SIMLP",
            store_dir=store_dir,
            symbols=self.feed.symbols,
        )
        self.gateway = LpGateway(services, "sim", session)
        if stages is not None:
            instrument_gateway(self.gateway, stages, {} if order_of is None else order_of)

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


def thread_cpu() -> dict[int, float]:
    """CPU seconds of each thread of this process (Linux ``/proc``), by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_cpu_since(since: dict[int, float]) -> dict[str, float]:
    """CPU seconds spent since ``since``: the event loop's thread (``loop``), the other
    Python threads (``python``: log writers, ``to_thread`` workers) and the threads
    Python does not know (``other``: QuickFIX's engine threads)."""
    python_ids = {t.native_id for t in threading.enumerate()}
    loop_id = threading.main_thread().native_id
    out = {"loop": 0.0, "python": 0.0, "other": 0.0}
    for tid, cpu in thread_cpu().items():
        spent = cpu - since.get(tid, 0.0)
        group = "loop" if tid == loop_id else "python" if tid in python_ids else "other"
        out[group] += spent
    return out


def pass_settings(run_dir: Path, deployed: Servers | None) -> Settings:
    """In-memory bus and state, or (``deployed``) those RabbitMQ and Redis; SQLite in
    ``run_dir``."""
    return Settings(
        log_dir=run_dir / "logs",
        database_url=f"sqlite+aiosqlite:///{run_dir / 'x.db'}",
        **(deployed_backends(deployed) if deployed else {}),  # type: ignore[arg-type]
    )


def pass_lp(
    services: Services,
    mode: str,
    run_dir: Path,
    lp_port: int | None,
    stages: StageTimes | None,
    order_of: dict[str, str],
    lp_cpu_s: list[float],
) -> Simulator | RemoteFixLp | ProcessLp:
    """The LP of a pass: on RabbitMQ its processes (``ProcessLp``); else the bus LP on the
    pipeline's loop (its handler's CPU time added to ``lp_cpu_s[0]``), or the gateway in
    the pipeline's process to the acceptor on ``lp_port``."""
    if services.settings.broker_url != "memory://":
        return ProcessLp(mode, services.settings, run_dir, lp_port)
    if mode == "fix":
        assert lp_port is not None
        return RemoteFixLp(services, lp_port, run_dir / "fix", stages, order_of)
    lp = Simulator(
        services.bus,
        services.state,
        services.logger("simulator"),
        PLAIN_LP,
        tick_interval_s=3600,
        clock=services.clock,
    )
    lp.lp._handle = timed_handler(lp.lp._handle, lp_cpu_s)  # type: ignore[method-assign]
    return lp


async def one_pass(
    workdir: Path,
    mode: str,
    orders: int,
    rate_per_s: float | None,
    lp_port: int | None,
    profile: Path | None = None,
    stages: StageTimes | None = None,
    deployed: Servers | None = None,
    latencies_out: list[float] | None = None,
) -> dict[str, float]:
    """One pass; returns count, elapsed_s, rate, lp_cpu_s, p50_ms, p99_ms, CPU figures.

    ``deployed`` (``--gateway-process``): the pipeline on those RabbitMQ and Redis (a queue and key
    prefix of its own, removed at the end), the LP side in processes of its own."""
    run_dir = Path(
        tempfile.mkdtemp(prefix=f"{mode}-{'paced' if rate_per_s else 'max'}-", dir=workdir)
    )
    settings = pass_settings(run_dir, deployed)
    logs = await asyncio.to_thread(setup_logging, settings, "simulator", bridge=False)
    accepted: dict[str, float] = {}
    order_of: dict[str, str] = {}  # lifecycle id -> order id (--stages)
    lp_cpu_s = [0.0]
    # CPU time of the loop's thread: wall-clock profiles on a shared machine show the neighbours
    profiler = cProfile.Profile(time.thread_time) if profile is not None else None
    try:
        async with open_services(settings, logs) as services:
            lp = pass_lp(services, mode, run_dir, lp_port, stages, order_of, lp_cpu_s)
            seed = demo_seed(20, random.Random(2), lp.feed)
            await apply_seed(seed, services.state, services.database)
            pipeline = EmbeddedPipeline(services, lp=lp, rebuild=False)
            await pipeline.start()
            intake = OrderIntake(services)
            accounts = [a.account_id for a in seed.accounts]
            gate = asyncio.Semaphore(IN_FLIGHT)
            switch_ms = sys.getswitchinterval() * 1000
            started = time.monotonic()
            cpu_started = time.process_time()
            threads_started = thread_cpu()
            if profiler is not None:
                profiler.enable()

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
                cpu_s = time.process_time() - cpu_started
                threads_s = thread_cpu_since(threads_started)
                side_cpu_s = lp.cpu_s() if isinstance(lp, ProcessLp) else 0.0
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(str(profile))
                await intake.shutdown()
            finally:
                await pipeline.stop()
    finally:
        if deployed:
            await cleanup_pass(settings.broker_url, settings, logs.logger("simulator"))
        await asyncio.to_thread(logs.close)
    done = await asyncio.to_thread(success_times, run_dir / "logs" / "worker_open.log")
    keys = [k for k in accepted if k in done]
    latencies = [(done[k] - accepted[k]) * 1000 for k in keys]
    elapsed = max(idle_at, *(done[k] for k in keys)) - min(accepted[k] for k in keys)
    p50, p99 = latency_figures(latencies, latencies_out)
    add_stage_ends(stages, order_of, accepted, done)
    # the pipeline's own CPU: the bus LP's handler runs in this process, the FIX LP does not
    pipeline_cpu_s = cpu_s - lp_cpu_s[0]
    return {
        "cpu_ms_per_order": pipeline_cpu_s * 1000 / len(keys),
        "loop_cpu_share": threads_s.get("loop", 0.0) / cpu_s,
        "engine_cpu_share": threads_s.get("other", 0.0) / cpu_s,
        "count": len(keys),
        "elapsed_s": elapsed,
        "rate": len(keys) / elapsed,
        "rate_without_lp": len(keys) / (elapsed - lp_cpu_s[0]),
        "lp_cpu_s": lp_cpu_s[0],
        "side_cpu_ms_per_order": side_cpu_s * 1000 / len(keys),
        "p50": p50,
        "p99": p99,
        "switch_ms": switch_ms,
    }


def latency_figures(latencies: list[float], pooled: list[float] | None) -> tuple[float, float]:
    """p50 and p99 of one pass; its latencies also added to ``pooled`` (``--repeat``)."""
    if pooled is not None:
        pooled.extend(latencies)
    p50, _p95, p99 = percentiles(latencies)
    return p50, p99


def line(name: str, figures: dict[str, float]) -> str:
    return (
        f"  {name:<10} {figures['count']:>6.0f} orders  {figures['rate']:>8.1f} /s   "
        f"p50 {figures['p50']:>8.2f} ms   p99 {figures['p99']:>8.2f} ms"
    )


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
        stages_file = os.environ.get(STAGES_ENV)
        stages = StageTimes() if stages_file else None
        if stages is not None:
            instrument_lp(simulator.lp, stages)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await simulator.start()
        print(READY, flush=True)
        await stop.wait()
        await simulator.stop()
        logs.close()
        if stages is not None and stages_file:
            await asyncio.to_thread(Path(stages_file).write_text, json.dumps(stages.at))


Pair = tuple[dict[str, float], dict[str, float]]
"""The figures of a bus pass and of the FIX pass after it."""


async def max_rate_pairs(
    workdir: Path,
    orders: int,
    repeat: int,
    profile: Path | None,
    deployed: Servers | None,
    lp_switch_ms: float | None,
    lp_core: int | None,
) -> tuple[list[Pair], float, float]:
    """``repeat`` pairs of maximum-rate passes, bus then FIX (alternating, so that a slow
    spell of the host hits both), and the last FIX LP's start-up and pass CPU seconds."""
    pairs: list[Pair] = []
    lp_start_cpu_s = lp_process_cpu_s = 0.0
    for _ in range(repeat):
        bus_max = await one_pass(workdir, "bus", orders, None, None, deployed=deployed)
        with LpProcess.acceptor(switch_ms=lp_switch_ms, core=lp_core) as lp:
            lp_start_cpu_s = lp.cpu_s()  # its interpreter, imports, dictionary: ~1 s
            fix_max = await one_pass(
                workdir, "fix", orders, None, lp.port, profile, deployed=deployed
            )
            lp_process_cpu_s = lp.cpu_s() - lp_start_cpu_s
        pairs.append((bus_max, fix_max))
    return pairs, lp_start_cpu_s, lp_process_cpu_s


async def main(
    orders: int,
    profile: Path | None = None,
    *,
    half_rate: float | None = None,
    show_stages: bool = False,
    lp_switch_ms: float | None = None,
    deployed: Servers | None = None,
    repeat: int = 1,
    lp_core: int | None = None,
) -> None:
    stages = StageTimes() if show_stages else None
    with tempfile.TemporaryDirectory(prefix="execflow-fixbench-") as tmp:
        workdir = Path(tmp)
        max_pairs: list[Pair] = []
        if half_rate is None:
            max_pairs, lp_start_cpu_s, lp_process_cpu_s = await max_rate_pairs(
                workdir, orders, repeat, profile, deployed, lp_switch_ms, lp_core
            )
            bus_max, fix_max = max_pairs[-1]
            half = statistics.median(fix["rate"] for _bus, fix in max_pairs) / 2
        else:
            half = half_rate
        lp_file = workdir / "lp-stages.json"
        pairs: list[Pair] = []
        pooled: dict[str, list[float]] = {"bus": [], "fix": []}
        for _ in range(repeat):  # alternating, so that a slow spell of the host hits both
            bus_half = await one_pass(
                workdir, "bus", orders, half, None, deployed=deployed, latencies_out=pooled["bus"]
            )
            with LpProcess.acceptor(lp_file if stages else None, lp_switch_ms, lp_core) as lp:
                fix_half = await one_pass(
                    workdir,
                    "fix",
                    orders,
                    half,
                    lp.port,
                    stages=stages,
                    deployed=deployed,
                    latencies_out=pooled["fix"],
                )
            pairs.append((bus_half, fix_half))
        if stages is not None and lp_file.exists():
            for clordid, at in json.loads(lp_file.read_text()).items():
                if clordid in stages.at:
                    stages.at[clordid].update(at)
    print(f"execflow FIX gateway bench: {orders} market orders per pass, one fill each")
    if deployed:
        print(DEPLOYED_SHAPE)
    print(cores_line(lp_core))
    print(
        f"GIL switch interval in the paced FIX pass: pipeline's process "
        f"{fix_half['switch_ms']:g} ms, FIX LP's process "
        f"{'Python default' if lp_switch_ms is None else f'{lp_switch_ms:g} ms'}"
    )
    if half_rate is not None:
        half_lines(half, bus_half, fix_half, stages)
        pooled_lines(pairs, pooled)
        return
    print("maximum rate (first accepted -> pipeline idle; latency request -> fill applied):")
    print(line("bus LP", bus_max))
    print(line("FIX LP", fix_max))
    acceptor_ms = lp_process_cpu_s * 1000 / fix_max["count"]
    if deployed:
        deployed_cpu_lines(bus_max, fix_max, acceptor_ms)
    else:
        embedded_cpu_lines(bus_max, fix_max, acceptor_ms, lp_start_cpu_s)
    half_lines(half, bus_half, fix_half, stages)
    pooled_lines(pairs, pooled)
    ratio = max_rate_summary(max_pairs, deployed is not None)
    added = statistics.median(fix["p99"] - bus["p99"] for bus, fix in pairs)
    print(target_line(ratio, added, len(pairs)))


def target_line(ratio: float, added_p99_ms: float, pairs: int) -> str:
    """Issue 12's two targets against this run's figures."""

    def verdict(met: bool) -> str:
        return "met" if met else "not met"

    of = f", the median of {pairs} pairs" if pairs > 1 else ""
    return (
        f"targets: throughput >= {THROUGHPUT_TARGET:.2f}x: {verdict(ratio >= THROUGHPUT_TARGET)} "
        f"({ratio:.2f}x); added p99 at half rate <= {ADDED_P99_TARGET_MS:g} ms: "
        f"{verdict(added_p99_ms <= ADDED_P99_TARGET_MS)} ({added_p99_ms:+.2f} ms{of})"
    )


THROUGHPUT_TARGET = 0.75
"""Issue 12: the gateway costs at most 25 % of the pipeline's throughput."""
ADDED_P99_TARGET_MS = 2.0
"""Issue 12: the gateway adds at most 2 ms p99 at half rate."""


def max_rate_summary(max_pairs: list[Pair], deployed: bool) -> float:
    """Each pair's throughput ratio (with ``--repeat``), then the ratio: the pairs' median
    (returned)."""
    base = "rate" if deployed else "rate_without_lp"
    ratios = [fix["rate"] / bus[base] for bus, fix in max_pairs]
    raw_ratios = [fix["rate"] / bus["rate"] for bus, fix in max_pairs]
    if len(max_pairs) > 1:
        print(f"{len(max_pairs)} pairs of maximum-rate passes, alternating (the last is above):")
        for number, (bus, fix) in enumerate(max_pairs, 1):
            print(
                f"  pair {number:>2}: bus {bus[base]:7.1f} /s, FIX {fix['rate']:7.1f} /s, "
                f"FIX / bus {ratios[number - 1]:.2f}"
            )
    ratio, raw_ratio = statistics.median(ratios), statistics.median(raw_ratios)
    of = f"the median of {len(ratios)} pairs" if len(ratios) > 1 else "this run"
    if deployed:
        print(
            f"gateway hop (the gateway in its own process): throughput {ratio:.2f}x of the "
            f"bus pass (costs {1 - ratio:.0%}; {of})"
        )
        return ratio
    print(
        f"gateway hop: throughput {ratio:.2f}x of the bus pipeline without its LP "
        f"(costs {1 - ratio:.0%}; {raw_ratio:.2f}x of the bus pass with it; {of})"
    )
    return ratio


def cores_line(lp_core: int | None) -> str:
    """Which CPUs the pipeline's and the FIX LP's processes ran on."""
    pipeline = cores_text(os.sched_getaffinity(0))
    if lp_core is None:
        return f"CPUs: every process on {pipeline} (shared)"
    return (
        f"CPUs: the pipeline's process on {pipeline}, the FIX LP's process on {lp_core} alone "
        "(a real LP is another host; --shared-cores to share them)"
    )


DEPLOYED_SHAPE = (
    "shape: --gateway-process (DESIGN §10): the pipeline's process on RabbitMQ + Redis + "
    "SQLite;\n  bus pass: the simulated LP consuming provider_requests in its own process;\n"
    "  FIX pass: `execflow run lp-gateway --lp sim` in its own process, to the FIX LP's process"
)


def embedded_cpu_lines(
    bus_max: dict[str, float], fix_max: dict[str, float], acceptor_ms: float, start_s: float
) -> None:
    """The embedded shape's CPU figures: the bus LP's handler taken out of its pass."""
    share = bus_max["lp_cpu_s"] / bus_max["elapsed_s"]
    print(
        f"  the bus LP took {bus_max['lp_cpu_s']:.2f} s of the bus pass's loop ({share:.0%}): "
        f"without it {bus_max['rate_without_lp']:.1f} /s"
    )
    bus_cpu, fix_cpu = bus_max["cpu_ms_per_order"], fix_max["cpu_ms_per_order"]
    print(
        f"  CPU per order in the pipeline's process: bus {bus_cpu:.3f} ms (its LP's "
        f"handler left out), FIX {fix_cpu:.3f} ms (event loop "
        f"{fix_max['loop_cpu_share']:.0%}, engine threads {fix_max['engine_cpu_share']:.0%}): "
        f"the gateway adds {fix_cpu - bus_cpu:.3f} ms, bus/FIX {bus_cpu / fix_cpu:.2f}"
    )
    print(
        f"  the FIX LP's own process used {acceptor_ms:.3f} ms "
        f"of CPU per order (its logon included, its start-up's {start_s:.2f} s not; "
        "a real LP is another host)"
    )


def deployed_cpu_lines(
    bus_max: dict[str, float], fix_max: dict[str, float], acceptor_ms: float
) -> None:
    """The deployment shape's CPU figures: each process apart."""
    bus_cpu, fix_cpu = bus_max["cpu_ms_per_order"], fix_max["cpu_ms_per_order"]
    print(f"  CPU per order in the pipeline's process: bus {bus_cpu:.3f} ms, FIX {fix_cpu:.3f} ms")
    print(
        f"  CPU per order on the LP side: the bus LP's process "
        f"{bus_max['side_cpu_ms_per_order']:.3f} ms, the gateway's process "
        f"{fix_max['side_cpu_ms_per_order']:.3f} ms (the FIX LP's process {acceptor_ms:.3f} ms, "
        "a real LP is another host)"
    )


def half_lines(
    half: float, bus_half: dict[str, float], fix_half: dict[str, float], stages: StageTimes | None
) -> None:
    print(f"half the FIX rate ({half:.1f} orders/s):")
    print(line("bus LP", bus_half))
    print(line("FIX LP", fix_half))
    added_p50 = fix_half["p50"] - bus_half["p50"]
    added_p99 = fix_half["p99"] - bus_half["p99"]
    print(f"  at half rate the gateway hop adds p50 {added_p50:+.2f} ms, p99 {added_p99:+.2f} ms")
    if stages is not None:
        print("  the FIX pass by stage (p50, p99 of each hop, ClOrdID by ClOrdID):")
        for text in stage_lines(stages.at):
            print(text)


def pooled_lines(pairs: list[Pair], pooled: dict[str, list[float]]) -> None:
    """With ``--repeat K``: each pair of paced passes, then every order of the K passes of
    each mode taken together. One pass's p99 is its ~10 slowest orders: on a shared
    machine one slow spell moves it by tens of ms; K x N orders hold K times as many."""
    if len(pairs) < 2:
        return
    print(f"  {len(pairs)} pairs of paced passes, alternating (the last pair is above):")
    added = []
    for number, (bus, fix) in enumerate(pairs, 1):
        added.append(fix["p99"] - bus["p99"])
        print(
            f"    pair {number:>2}: p99 bus {bus['p99']:7.2f} ms, FIX {fix['p99']:7.2f} ms, "
            f"added {added[-1]:+7.2f} ms"
        )
    bus_p50, _, bus_p99 = percentiles(pooled["bus"])
    fix_p50, _, fix_p99 = percentiles(pooled["fix"])
    print(
        f"  every pair's orders together: bus LP {len(pooled['bus'])} orders p50 {bus_p50:.2f} "
        f"ms p99 {bus_p99:.2f} ms; FIX LP {len(pooled['fix'])} orders p50 {fix_p50:.2f} ms "
        f"p99 {fix_p99:.2f} ms"
    )
    print(
        f"  at half rate the gateway hop adds p50 {fix_p50 - bus_p50:+.2f} ms, "
        f"p99 {fix_p99 - bus_p99:+.2f} ms (all pairs' orders; the pairs' median added p99 "
        f"{statistics.median(added):+.2f} ms)"
    )


_INNER = "EXECFLOW_FIXBENCH_INNER"


def inner(spec: str) -> None:
    """The counted process: ``bus:N:0:D`` or ``fix:N:PORT:D`` (run under valgrind); ``D`` 1
    for ``--gateway-process``."""
    mode, orders, port, deployed = spec.split(":")
    with tempfile.TemporaryDirectory(prefix="execflow-fixinstr-") as tmp:
        if mode == "fix" or deployed == "1":
            lp_port = int(port) or None
            servers = Servers() if deployed == "1" else None
            asyncio.run(one_pass(Path(tmp), mode, int(orders), None, lp_port, deployed=servers))
        else:
            asyncio.run(fill_pass(Path(tmp), int(orders), 3600))


def count(mode: str, orders: int, deployed: bool) -> int:
    """Instructions of one counted process (the LP side's processes run outside valgrind)."""
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(LpProcess.acceptor()).port if mode == "fix" else 0
        spec = f"{mode}:{orders}:{port}:{int(deployed)}"
        return cachegrind.instructions([sys.executable, __file__], {**os.environ, _INNER: spec})


def instructions(small: int, large: int, deployed: bool) -> None:
    """Print instructions per order of the pipeline's process with and without the gateway."""
    per_order: dict[str, float] = {}
    for mode in ("bus", "fix"):
        counts = count(mode, large, deployed) - count(mode, small, deployed)
        per_order[mode] = counts / (large - small)
    bus, fix = per_order["bus"], per_order["fix"]
    if deployed:
        base = "the bus LP in its own process:"
        through = "the gateway in its own process:"
        print("shape: --gateway-process; only the pipeline's process counted")
    else:
        base, through = "no LP (fills published by the bench):", "through the FIX gateway:"
    print(f"execflow FIX gateway instructions: orders {small} and {large}, the difference")
    print(f"  {base:<38} {bus / 1e6:.3f} M instructions per order")
    print(f"  {through:<38} {fix / 1e6:.3f} M instructions per order")
    print(
        f"  the gateway hop adds {(fix - bus) / 1e6:.3f} M ({fix / bus - 1:+.0%}); "
        f"{'bus' if deployed else 'no LP'} / FIX {bus / fix:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument(
        "--profile", type=Path, metavar="FILE", help="cProfile the loop of the FIX max-rate pass"
    )
    parser.add_argument(
        "--instructions",
        metavar="N1,N2",
        help="count instructions per order under cachegrind (orders N1 and N2 per run)",
    )
    parser.add_argument(
        "--half-rate",
        type=float,
        metavar="R",
        help="skip the max-rate passes: run only the paced passes, at R orders/s",
    )
    parser.add_argument(
        "--stages", action="store_true", help="print the paced FIX pass's time by hop"
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        metavar="MS",
        help="sys.setswitchinterval of this process (the pipeline's), in ms",
    )
    parser.add_argument(
        "--lp-switch-interval",
        type=float,
        metavar="MS",
        help="sys.setswitchinterval of the FIX LP's process, in ms",
    )
    parser.add_argument(
        "--gateway-process",
        action="store_true",
        help="the deployment's shape: the pipeline on RabbitMQ and Redis, the bus LP and "
        "`execflow run lp-gateway` each in a process of its own",
    )
    parser.add_argument(
        "--amqp-url",
        default=Servers.amqp_url,
        help="with --gateway-process: the RabbitMQ to run on (e.g. a quiet one of your own)",
    )
    parser.add_argument(
        "--redis-url",
        default=Servers.redis_url,
        help="with --gateway-process: the Redis to run on (no query string: a key prefix is added)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="K",
        help="run the passes K times, alternating bus and FIX: the maximum-rate ratio is "
        "the pairs' median; the paced passes' p50 / p99 also of all their orders together",
    )
    parser.add_argument(
        "--shared-cores",
        action="store_true",
        help="run the FIX LP's process on the pipeline's cores (by default the last core is "
        "kept for it, the pipeline's process runs on the others)",
    )
    parser.add_argument("--serve-lp", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--lp-core", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-bus-lp", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.repeat < 1 or (arguments.repeat > 1 and arguments.stages):
        parser.error("--repeat: at least 1, and 1 with --stages")
    if arguments.gateway_process and arguments.stages:
        parser.error("--stages wraps the gateway's methods: not with --gateway-process")
    if arguments.switch_interval is not None:
        sys.setswitchinterval(arguments.switch_interval / 1000)
    if os.environ.get(_INNER):
        inner(os.environ.pop(_INNER))  # not inherited by the LP side's processes
    elif arguments.instructions:
        small, large = (int(n) for n in arguments.instructions.split(","))
        instructions(small, large, arguments.gateway_process)
    elif arguments.serve_lp:
        if arguments.lp_core is not None:  # before the engine or the loop starts a thread
            os.sched_setaffinity(0, {arguments.lp_core})
        asyncio.run(serve_lp(arguments.serve_lp))  # (--switch-interval: set above)
    elif arguments.serve_bus_lp:
        asyncio.run(serve_bus_lp())
    else:
        # before any thread starts: every thread of this process inherits its CPUs
        shared = arguments.shared_cores or arguments.gateway_process
        lp_core = None if shared else keep_core_for_lp()
        asyncio.run(
            main(
                arguments.orders,
                arguments.profile,
                half_rate=arguments.half_rate,
                show_stages=arguments.stages,
                lp_switch_ms=arguments.lp_switch_interval,
                deployed=Servers(arguments.amqp_url, arguments.redis_url)
                if arguments.gateway_process
                else None,
                repeat=arguments.repeat,
                lp_core=lp_core,
            )
        )
