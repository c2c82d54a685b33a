"""End-to-end pipeline benchmark: throughput and latency, embedded and distributed.

Workload: ``n`` market orders are placed through the intake (nobody answers them), then
one fill report per order is published to the reports queue, as fast as possible
(maximum rate) and once more paced at half that rate (latency). A report counts as done
when its worker's ``OPEN:SUCCESS`` line is written (after the state commit and the
ack); latency is that line's timestamp minus the report's publish time (one host, one
clock). Logging stays fully on (text, INFO), as in production.

Also measured in the same run:

* the raw two-hop RabbitMQ relay (publish with confirms -> consume with ack ->
  republish with confirms -> consume with ack) with the same bus implementation, and
  the distributed pipeline's rate as a share of it (the pipeline's path to a committed
  state is the same two hops: reports -> dispatcher -> worker queue -> worker);
* the CPU share of logging: the embedded run repeated with ``log_level=CRITICAL`` (no
  line formatted or written), comparing CPU seconds per report;
* the RSS of each distributed process (dispatcher, worker open, db writer) at the end of
  each distributed pass, beside a bare interpreter's (``apps.memory``);
* the CPU time of each distributed pass summed over every process, the local RabbitMQ,
  Redis and PostgreSQL servers included (``apps.cputime``), from the first fill
  published until every report is applied and its event is in the database, and the
  workers' ``VERSION_CONFLICT`` lines.

``apps.scaleout`` runs the same distributed pass with N instances of each process
(``execflow bench --instances``).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path

import orjson

from execflow.apps.cputime import CpuMeter, CpuSample, listening_pid
from execflow.apps.memory import MemoryFigures, bare_interpreter_rss, process_rss
from execflow.backends.bus import Bus, Delivery, OutgoingMessage, QueueNames
from execflow.backends.rabbitmq_queues import delay_queue_names
from execflow.domain.enums import Side
from execflow.errors import ExecflowError, StoreError
from execflow.logs.catalog import file_name
from execflow.logs.events import EventLogger
from execflow.logs.setup import setup_logging
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.intake import OrderIntake
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings, environment_with
from execflow.sim.feed import DEFAULT_SYMBOLS, PriceFeed
from execflow.sim.refdata import demo_seed

__all__ = [
    "DEFAULT_AMQP_URL",
    "DEFAULT_POSTGRES_ADMIN_URL",
    "DEFAULT_REDIS_URL",
    "BenchConfig",
    "BenchResult",
    "RunFigures",
    "Topology",
    "bench_database",
    "cleanup_pass",
    "distributed_pass",
    "run_bench",
]

_SUCCESS_TAG = "[OPEN:SUCCESS]"
_CONFLICT_TAG = ":VERSION_CONFLICT]"
_DLQ_TAG = "[OPEN:DLQ]"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_ENTRY = "from execflow.cli.app import main; main()"
# the same under cProfile (``BenchConfig.profile_dir``, ``cli.profiled``)
PROFILED_ENTRY = "from execflow.cli.profiled import run; run({path})"
# the distributed pass's processes: the name each logs under, its ``execflow`` arguments
PIPELINE_PROCESSES = {
    "db_writer": ("run", "db-writer"),
    "worker_open": ("run", "worker", "open"),
    "dispatcher": ("run", "dispatcher"),
}
# the servers' CPU groups: (name, the URL field of BenchConfig, default port)
_SERVERS = (
    ("rabbitmq", "amqp_url", 5672),
    ("redis", "redis_url", 6379),
    ("postgresql", "postgres_admin_url", 5432),
)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """Sizes and where the local services are."""

    embedded_reports: int = 1500
    distributed_reports: int = 1500
    relay_messages: int = 5000
    distributed: bool = True
    amqp_url: str = DEFAULT_AMQP_URL
    redis_url: str = DEFAULT_REDIS_URL
    postgres_admin_url: str = DEFAULT_POSTGRES_ADMIN_URL
    timeout_s: float = 300.0
    child_env: tuple[tuple[str, str], ...] = ()
    """Extra environment of the pipeline processes (``bench/memory.py --child-pythonpath``)."""
    pass_settings: tuple[tuple[str, str], ...] = ()
    """Extra settings of a distributed pass, for its processes and the driver alike
    (``bench/cluster_bench.py``: ``queue_type``)."""
    server_pids: tuple[tuple[str, tuple[int, ...]], ...] = ()
    """Servers whose CPU is counted by these pids instead of the process listening on the
    URL's port (``bench/cluster_bench.py``: every node of the Redis Cluster it started)."""
    idle_sample_s: float = 0.0
    """Seconds a distributed pass samples its processes and servers idle (orders placed,
    no fill sent yet): their background CPU (timers, a cluster's pings, other clients of
    a shared server), in ``RunFigures.idle_cpu_by_group``; 0 not to sample."""
    profile_dir: Path | None = None
    """Where each distributed process writes its cProfile (``<label>-<name>-<instance>.prof``,
    the loop thread's CPU time: ``cli.profiled``); ``None``: the processes run plain."""


@dataclass(frozen=True, slots=True)
class Topology:
    """How a distributed pass is laid out: processes per component, accounts traded."""

    instances: int = 1
    """Processes of each of the dispatcher, worker open and db writer."""
    accounts: int = 20
    """Accounts the orders are spread over (round robin)."""


@dataclass(frozen=True, slots=True)
class RunFigures:
    """One measured pass."""

    reports: int
    elapsed_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_s: float = 0.0
    memory: MemoryFigures | None = None
    """The distributed processes' RSS once every report of the pass was applied."""
    cpu_by_group: tuple[tuple[str, float], ...] = ()
    """Distributed: CPU seconds per component (instances summed) and per server."""
    conflicts: int | None = None
    """Distributed: the workers' ``VERSION_CONFLICT`` lines (each one a retried commit)."""
    cpu_window_s: float = 0.0
    """Distributed: the seconds ``cpu_s`` was counted over."""
    idle_cpu_by_group: tuple[tuple[str, float], ...] = ()
    """Distributed, with ``idle_sample_s``: CPU seconds per second each group spent idle."""
    dead_lettered: int = 0
    """Distributed: reports the workers dead-lettered instead of applying."""
    refused: tuple[tuple[str, int], ...] = ()
    """Orders the intake refused while the pass placed them, by reason (no fill sent)."""

    @property
    def rate(self) -> float:
        """Reports per second."""
        return self.reports / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def cpu_ms_per_report(self, group: str | None = None) -> float:
        """CPU milliseconds per report: every process's, or one group's."""
        if not self.reports:
            return 0.0
        if group is None:
            return self.cpu_s / self.reports * 1000
        return dict(self.cpu_by_group).get(group, 0.0) / self.reports * 1000

    def net_cpu_ms_per_report(self, group: str | None = None) -> float:
        """``cpu_ms_per_report`` less the idle rate over the window: the reports' own CPU."""
        if not self.reports:
            return 0.0
        idle = dict(self.idle_cpu_by_group)
        rate = sum(idle.values()) if group is None else idle.get(group, 0.0)
        background_ms = rate * self.cpu_window_s / self.reports * 1000
        return max(0.0, self.cpu_ms_per_report(group) - background_ms)


@dataclass
class BenchResult:
    """Everything ``execflow bench`` prints."""

    embedded_max: RunFigures | None = None
    embedded_half: RunFigures | None = None
    embedded_quiet: RunFigures | None = None
    distributed_max: RunFigures | None = None
    distributed_half: RunFigures | None = None
    relay_rate: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def logging_cpu_share(self) -> float | None:
        """1 - CPU per report without logging / CPU per report with full logging.

        The full-logging figure is the lower of the two INFO passes (max and half rate),
        so a noisy neighbour inflates the share less.
        """
        quiet = self.embedded_quiet
        full = [f for f in (self.embedded_max, self.embedded_half) if f and f.cpu_s > 0]
        if quiet is None or not full or quiet.reports == 0:
            return None
        per_full = min(f.cpu_s / f.reports for f in full)
        per_quiet = quiet.cpu_s / quiet.reports
        return max(0.0, 1.0 - per_quiet / per_full)

    def cpu_ms_per_report(self) -> tuple[float, float] | None:
        """(with logging, without) CPU milliseconds per report, as used for the share."""
        quiet = self.embedded_quiet
        full = [f for f in (self.embedded_max, self.embedded_half) if f and f.cpu_s > 0]
        if quiet is None or not full or quiet.reports == 0:
            return None
        return min(f.cpu_s / f.reports for f in full) * 1000, quiet.cpu_s / quiet.reports * 1000


def percentiles(values: Sequence[float]) -> tuple[float, float, float]:
    """p50, p95, p99 (nearest rank)."""
    if not values:
        return 0.0, 0.0, 0.0
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return rank(0.5), rank(0.95), rank(0.99)


def fill_report(lifecycle_id: str, exec_id: str, px: str, qty: str) -> bytes:
    """A JSON fill report (the simulator's named-field format)."""
    return orjson.dumps(
        {
            "type": "execution_report",
            "lifecycle_id": lifecycle_id,
            "exec_id": exec_id,
            "ord_status": "EXECUTED",
            "avg_px": px,
            "cum_qty": qty,
            "last_px": px,
            "last_qty": qty,
            "leaves_qty": "0",
            "provider": "bench",
        }
    )


def success_times(log_file: Path) -> dict[str, float]:
    """order_id -> POSIX time of its ``OPEN:SUCCESS`` line (text format)."""
    out: dict[str, float] = {}
    if not log_file.exists():
        return out
    with log_file.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if _SUCCESS_TAG not in line:
                continue
            stamp = datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00"))
            for part in line.split():
                if part.startswith("order_id="):
                    out[part[9:]] = stamp.timestamp()
                    break
    return out


class SuccessTail:
    """``success_times`` read incrementally: each poll parses only the new complete lines.

    Also collects the reports the worker dead-lettered (``OPEN:DLQ``, e.g. its commit
    lost every compare-and-set of its attempts to other reports of the same account).
    """

    def __init__(self, log_file: Path) -> None:
        self._log_file = log_file
        self._offset = 0
        self.found: dict[str, float] = {}
        self.dead_lettered: set[str] = set()

    def poll(self) -> dict[str, float]:
        """order_id -> POSIX time of every ``OPEN:SUCCESS`` line so far."""
        if not self._log_file.exists():
            return self.found
        with self._log_file.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        for line in chunk[:end].decode("utf-8", "replace").splitlines():
            if _SUCCESS_TAG in line:
                order_id = _order_id(line)
                if order_id is not None:
                    stamp = datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00"))
                    self.found[order_id] = stamp.timestamp()
            elif _DLQ_TAG in line:
                order_id = _order_id(line)
                if order_id is not None:
                    self.dead_lettered.add(order_id)
        return self.found

    @property
    def settled(self) -> int:
        """Reports applied or dead-lettered so far (as of the last poll)."""
        return len(self.found) + len(self.dead_lettered - self.found.keys())


def _order_id(line: str) -> str | None:
    for part in line.split():
        if part.startswith("order_id="):
            return part[9:]
    return None


# -- workload -----------------------------------------------------------------------------


async def seed_reference_data(services: Services, accounts: int = 20) -> tuple[list[str], str]:
    """Seed demo accounts with instruments and prices: (account ids, EURUSD ask)."""
    feed = PriceFeed(DEFAULT_SYMBOLS, services.state.put_price, random.Random(1), services.clock)
    seed = demo_seed(accounts, random.Random(2), feed)
    await apply_seed(seed, services.state, services.database)
    ask = str(feed.quote("EURUSD").ask)  # type: ignore[union-attr]
    return [a.account_id for a in seed.accounts], ask


async def place_orders(
    services: Services,
    count: int,
    seeded: tuple[list[str], str] | None = None,
    refused: Counter[str] | None = None,
) -> list[tuple[str, str]]:
    """Place ``count`` EURUSD market orders (seeding first unless ``seeded``): [(id, price)].

    ``refused`` counts the refusals by reason (the refused orders are left out).
    """
    accounts, ask = seeded if seeded is not None else await seed_reference_data(services)
    intake = OrderIntake(services)
    placed: list[tuple[str, str]] = []
    for index in range(count):
        result = await intake.open_market(
            accounts[index % len(accounts)], "EURUSD", Side.BUY, "0.01"
        )
        if result.accepted and result.order_id is not None:
            placed.append((result.order_id, ask))
        elif refused is not None:
            refused[result.reason or "unknown"] += 1
    return placed


async def publish_fills(
    bus: Bus, orders: Sequence[tuple[str, str]], rate_per_s: float | None, tag: str
) -> dict[str, float]:
    """Publish one fill per order (batches of 50 at full speed); order_id -> publish time."""
    queue = bus.queues.reports
    published: dict[str, float] = {}
    started = time.monotonic()
    batch = 1 if rate_per_s else 50
    for offset in range(0, len(orders), batch):
        chunk = orders[offset : offset + batch]
        if rate_per_s:
            delay = started + offset / rate_per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        messages = [
            OutgoingMessage(fill_report(oid, f"{tag}-{oid}", px, "0.01"), {}, f"{tag}-{oid}")
            for oid, px in chunk
        ]
        now = time.time()
        await bus.publish_batch(queue, messages)
        for oid, _px in chunk:
            published[oid] = now
    return published


def figures(published: dict[str, float], done: dict[str, float], cpu_s: float = 0.0) -> RunFigures:
    """Throughput and latency of one pass from publish and success times."""
    keys = [k for k in published if k in done]
    if not keys:
        return RunFigures(0, 0.0, 0.0, 0.0, 0.0, cpu_s)
    latencies = [(done[k] - published[k]) * 1000 for k in keys]
    elapsed = max(done[k] for k in keys) - min(published[k] for k in keys)
    p50, p95, p99 = percentiles(latencies)
    return RunFigures(len(keys), elapsed, p50, p95, p99, cpu_s)


async def wait_for(
    predicate: Callable[[], Awaitable[bool]],
    timeout_s: float,
    poll_s: float = 0.05,
    check: Callable[[], None] | None = None,
) -> None:
    """Poll ``predicate`` until true; ``TimeoutError`` after ``timeout_s``.

    ``check`` runs before each poll and may raise to end the wait early (a process the
    pass needs has exited: nothing would come however long we waited).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if check is not None:
            check()
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout_s} s")
        await asyncio.sleep(poll_s)


class ChildExited(ExecflowError):
    """A process of a distributed pass ended before the pass did."""


def children_alive(children: Mapping[str, Sequence[asyncio.subprocess.Process]]) -> None:
    """Raise ``ChildExited`` naming the first of ``children`` that has exited, if any."""
    for name, started in children.items():
        for instance, child in enumerate(started, start=1):
            if child.returncode is not None:
                raise ChildExited(
                    f"{name} (instance {instance}) exited with code {child.returncode} "
                    "before the pass ended (its own error, if it wrote one, is on stderr above)",
                    pid=child.pid,
                )


# -- embedded -------------------------------------------------------------------------------


async def embedded_pass(
    workdir: Path, count: int, level: str, rate_per_s: float | None, timeout_s: float
) -> RunFigures:
    """One embedded pass in a fresh directory (memory bus and state, SQLite)."""
    run_dir = workdir / f"embedded-{level.lower()}-{'paced' if rate_per_s else 'max'}"
    await asyncio.to_thread(run_dir.mkdir, parents=True)
    settings = Settings(
        log_dir=run_dir / "logs",
        log_level=level,
        database_url=f"sqlite+aiosqlite:///{run_dir / 'execflow.db'}",
    )
    logs = await asyncio.to_thread(setup_logging, settings, "simulator", bridge=False)
    try:
        async with open_services(settings, logs) as services:
            orders = await place_orders(services, count)
            pipeline = EmbeddedPipeline(services, rebuild=False)
            await pipeline.start()
            log = logs.logger("worker_open")
            try:
                cpu0 = time.process_time()
                published = await publish_fills(services.bus, orders, rate_per_s, "emb")

                async def done() -> bool:
                    return log.stats.count("success") >= len(orders)

                await wait_for(done, timeout_s)
                cpu = time.process_time() - cpu0
                await pipeline.drain(timeout_s=timeout_s)
            finally:
                await pipeline.stop()
    finally:
        await asyncio.to_thread(logs.close)
    if level != "INFO":
        # no lines to read: the wall time of the whole pass stands for the rate
        elapsed = max(time.time() - min(published.values()), 1e-9)
        return RunFigures(len(published), elapsed, 0.0, 0.0, 0.0, cpu)
    done_at = await asyncio.to_thread(success_times, run_dir / "logs" / "worker_open.log")
    return figures(published, done_at, cpu)


# -- RabbitMQ relay ---------------------------------------------------------------------------


async def relay_rate(amqp_url: str, count: int, timeout_s: float) -> float:
    """Messages per second through two confirmed hops on RabbitMQ (execflow's own bus)."""
    from execflow.backends.rabbitmq import RabbitMQBus

    names = QueueNames(f"efbench{uuid.uuid4().hex[:8]}")
    bus = RabbitMQBus(amqp_url, names, prefetch=64)
    await bus.connect()
    first, second = names.name("hop1"), names.name("hop2")
    received = 0
    done = asyncio.Event()
    try:
        await bus.declare(first)
        await bus.declare(second)

        async def hop(delivery: Delivery) -> None:
            await bus.publish(second, delivery.message.body)
            await delivery.ack()

        async def sink(delivery: Delivery) -> None:
            nonlocal received
            await delivery.ack()
            received += 1
            if received >= count:
                done.set()

        c1 = await bus.consume(first, hop)
        c2 = await bus.consume(second, sink)
        body = fill_report("relay", "relay", "1.1", "0.01")
        started = time.monotonic()
        for offset in range(0, count, 50):
            size = min(50, count - offset)
            await bus.publish_batch(first, [OutgoingMessage(body) for _ in range(size)])
        await asyncio.wait_for(done.wait(), timeout_s)
        elapsed = time.monotonic() - started
        await c1.stop()
        await c2.stop()
        return count / elapsed
    finally:
        await bus.close()
        await delete_queues(amqp_url, [first, second, names.dlq])


async def delete_queues(amqp_url: str, queues: Sequence[str]) -> None:
    """Delete ``queues`` (each one whether it exists or not) on the RabbitMQ at ``amqp_url``."""
    # the first node that answers of a URL naming several (bench/cluster_bench.py's
    # RabbitMQ cluster): aio_pika.connect takes one host only
    from execflow.backends.rabbitmq_failover import connect_failover

    connection = await connect_failover(amqp_url)
    try:
        channel = await connection.channel()
        for name in queues:
            await channel.queue_delete(name)
    finally:
        await connection.close()


# -- distributed ------------------------------------------------------------------------------


@asynccontextmanager
async def bench_database(config: BenchConfig) -> AsyncIterator[tuple[str, str]]:
    """A throwaway PostgreSQL database at the schema's head: (URL, name); dropped on exit."""
    import asyncpg  # type: ignore[import-untyped]

    db_name = f"execflow_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(config.postgres_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{db_name}"')
    finally:
        await admin.close()
    base_pg = config.postgres_admin_url.rsplit("/", 1)[0].replace(
        "postgresql://", "postgresql+asyncpg://"
    )
    try:
        url = f"{base_pg}/{db_name}"
        # migrated once here, as a deployment's first start leaves it: the processes then
        # find the schema at head and do not load Alembic (one behind it would, +8 MB RSS)
        await _migrate(url)
        yield url, db_name
    finally:
        admin = await asyncpg.connect(config.postgres_admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        finally:
            await admin.close()


async def distributed_passes(config: BenchConfig, workdir: Path) -> tuple[RunFigures, RunFigures]:
    """Dispatcher, worker open and db writer as processes: max rate, then paced at half."""
    results: list[RunFigures] = []
    async with bench_database(config) as database:
        for label, paced in (("max", False), ("paced", True)):
            rate = max(1.0, results[0].rate / 2) if paced else None
            run_dir = workdir / f"distributed-{label}"
            results.append(await distributed_pass(config, database, run_dir, label, rate))
    return results[0], results[1]


async def _migrate(url: str) -> None:
    from execflow.backends.sql import SqlDatabase

    database = SqlDatabase(url)
    await database.connect()
    await database.close()


def _entry(config: BenchConfig, process: str) -> str:
    """The ``python -c`` program of a distributed process: plain, or profiled."""
    if config.profile_dir is None:
        return _ENTRY
    return PROFILED_ENTRY.format(path=repr(str(config.profile_dir.resolve() / f"{process}.prof")))


def _pass_settings(
    config: BenchConfig, database_url: str, label: str, run_dir: Path
) -> dict[str, str]:
    """One pass's settings: its own queue and key prefixes, the shared bench database."""
    token = f"efbench{uuid.uuid4().hex[:8]}"
    return {
        "broker_url": config.amqp_url,
        "state_url": f"{config.redis_url}{'&' if '?' in config.redis_url else '?'}"
        f"key_prefix={token}{label}",
        "database_url": database_url,
        "queue_prefix": f"{token}.{label}",
        "log_dir": str(run_dir / "logs"),
        **dict(config.pass_settings),
    }


async def distributed_pass(
    config: BenchConfig,
    database: tuple[str, str],
    run_dir: Path,
    label: str,
    rate_per_s: float | None = None,
    topology: Topology = Topology(),
) -> RunFigures:
    """One pass on RabbitMQ / Redis / PostgreSQL with ``topology``'s processes and accounts.

    ``database``: (URL, name) from ``bench_database``. The CPU is counted from the first
    fill published until every report is applied and its event written.
    """
    values = _pass_settings(config, database[0], label, run_dir)
    await asyncio.to_thread(run_dir.mkdir, parents=True)
    env = environment_with(
        **{f"EXECFLOW_{k.upper()}": v for k, v in values.items()}, **dict(config.child_env)
    )
    settings = Settings(**values)  # type: ignore[arg-type]
    own = settings.model_copy(update={"log_dir": run_dir / "bench"})
    logs = await asyncio.to_thread(setup_logging, own, "simulator")
    children: dict[str, list[asyncio.subprocess.Process]] = {}
    instances = range(1, topology.instances + 1)
    try:
        async with open_services(settings, logs) as services:
            # seeded before the processes start, as a running deployment's store is: a
            # process that starts on an empty store asks the database whether to rebuild
            # and keeps SQLAlchemy loaded from then on (docs/benchmarks.md, "Memory")
            accounts, ask = await seed_reference_data(services, max(20, topology.accounts))
            for name, args in PIPELINE_PROCESSES.items():
                children[name] = [
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-c",
                        _entry(config, f"{label}-{name}-{i}"),
                        *args,
                        "--instance",
                        str(i),
                        env=env,
                    )
                    for i in instances
                ]
            bus = services.bus
            queues = [bus.queues.reports, bus.queues.worker("open"), bus.queues.db_updates]

            async def consuming() -> bool:
                counts = [await bus.consumer_count(queue) for queue in queues]
                return min(counts) >= topology.instances

            alive = partial(children_alive, children)
            await wait_for(consuming, max(60.0, config.timeout_s), poll_s=0.1, check=alive)
            written = await services.database.count_events()
            seeded = (accounts[: topology.accounts], ask)
            refused: Counter[str] = Counter()
            orders = await place_orders(services, config.distributed_reports, seeded, refused)
            # the placement's events written first: the CPU counted is the fills' only
            await _wait_written(services, written + len(orders), config.timeout_s, alive)
            meter = await asyncio.to_thread(_meter, config, children, database[1])
            before, idle = await _idle_rates(meter, config.idle_sample_s)
            window = time.monotonic()
            published = await publish_fills(bus, orders, rate_per_s, label)
            log_files = [run_dir / "logs" / file_name("worker_open", i) for i in instances]
            tails = [SuccessTail(log_file) for log_file in log_files]

            async def all_done() -> bool:
                # only the lines written since the last poll: a poll costs no re-read of
                # the whole file, which would steal CPU from the measured processes
                for tail in tails:
                    await asyncio.to_thread(tail.poll)
                return sum(tail.settled for tail in tails) >= len(orders)

            await wait_for(all_done, config.timeout_s, poll_s=0.5, check=alive)
            applied = sum(len(tail.found) for tail in tails)
            events = written + len(orders) + applied
            await _wait_written(services, events, config.timeout_s, alive)
            cpu = (await asyncio.to_thread(meter.sample)).since(before)
            window_s = time.monotonic() - window
            # warmed up: every report of the pass applied
            pids = {
                name if topology.instances == 1 else f"{name}-{i}": child.pid
                for name, started in children.items()
                for i, child in zip(instances, started, strict=True)
            }
            memory = MemoryFigures(process_rss(pids), await asyncio.to_thread(bare_interpreter_rss))
            done_at = {k: v for tail in tails for k, v in tail.found.items()}
            result = replace(
                figures(published, done_at),
                memory=memory,
                cpu_s=sum(cpu.values()),
                cpu_by_group=tuple(cpu.items()),
                cpu_window_s=window_s,
                idle_cpu_by_group=tuple(idle.items()),
                conflicts=await asyncio.to_thread(count_tagged, log_files, _CONFLICT_TAG),
                dead_lettered=len(orders) - len(done_at),
                refused=tuple(sorted(refused.items())),
            )
    finally:
        started_all = [child for started in children.values() for child in started]
        for child in started_all:
            if child.returncode is None:
                child.terminate()
        await asyncio.gather(*(c.wait() for c in started_all))
        await cleanup_pass(config.amqp_url, settings, logs.logger("simulator"))
        await asyncio.to_thread(logs.close)
    return result


async def _idle_rates(meter: CpuMeter, seconds: float) -> tuple[CpuSample, dict[str, float]]:
    """A sample now and, after ``seconds`` of nothing sent, each group's CPU s per s."""
    first = await asyncio.to_thread(meter.sample)
    if seconds <= 0:
        return first, {}
    started = time.monotonic()
    await asyncio.sleep(seconds)
    last = await asyncio.to_thread(meter.sample)
    elapsed = time.monotonic() - started
    return last, {group: cpu / elapsed for group, cpu in last.since(first).items()}


async def _wait_written(
    services: Services, events: int, timeout_s: float, check: Callable[[], None]
) -> None:
    """Until the database holds ``events`` events (one per placed order, one per fill)."""

    async def written() -> bool:
        return await services.database.count_events() >= events

    await wait_for(written, timeout_s, poll_s=0.25, check=check)


def _meter(
    config: BenchConfig,
    children: Mapping[str, Sequence[asyncio.subprocess.Process]],
    db_name: str,
) -> CpuMeter:
    """The pass's processes by component, and the local servers found by their ports."""
    pipeline = {name: [child.pid for child in started] for name, started in children.items()}
    pipeline.update((name, list(pids)) for name, pids in config.server_pids)
    return CpuMeter(pipeline, _server_pids(config), db_name)


def _server_pids(config: BenchConfig) -> dict[str, int | None]:
    """The local servers' pids by the port they listen on (those in ``server_pids`` left out)."""
    given = {name for name, _pids in config.server_pids}
    return {
        name: listening_pid(getattr(config, field), port)
        for name, field, port in _SERVERS
        if name not in given
    }


def count_tagged(log_files: Sequence[Path], tag: str) -> int:
    """Lines holding ``tag`` in the given log files (a missing file counts none)."""
    total = 0
    for log_file in log_files:
        if not log_file.exists():
            continue
        with log_file.open("rb") as handle:
            encoded = tag.encode()
            total += sum(1 for line in handle if encoded in line)
    return total


async def cleanup_pass(amqp_url: str, settings: Settings, log: EventLogger) -> None:
    """Remove this pass's queues and Redis keys (the servers are shared)."""
    from execflow.backends.factory import make_state_store

    queues = QueueNames(settings.queue_prefix).all()
    # with the delay queues the pass's processes declared for retries (gone with them)
    await delete_queues(amqp_url, [*queues, *delay_queue_names(queues)])
    state = make_state_store(settings)
    try:
        await state.connect()
        await state.flush_all()
    except StoreError as exc:
        log.error("BENCH:CLEANUP_FAILED", exc=exc, queue_prefix=settings.queue_prefix)
    finally:
        await state.close()


# -- the whole run ----------------------------------------------------------------------------


async def run_bench(config: BenchConfig, progress: Callable[[str], None] = print) -> BenchResult:
    """Every pass, in one run, in a temporary directory removed at the end."""
    result = BenchResult()
    workdir = Path(tempfile.mkdtemp(prefix="execflow-bench-"))
    try:
        n = config.embedded_reports
        progress(f"embedded, full logging, max rate ({n} reports)")
        result.embedded_max = await embedded_pass(workdir, n, "INFO", None, config.timeout_s)
        progress("embedded, logging off (CPU share of logging)")
        result.embedded_quiet = await embedded_pass(workdir, n, "CRITICAL", None, config.timeout_s)
        half = max(1.0, result.embedded_max.rate / 2)
        progress(f"embedded, full logging, paced at {half:.0f} reports/s")
        result.embedded_half = await embedded_pass(workdir, n, "INFO", half, config.timeout_s)
        if config.distributed:
            progress(f"RabbitMQ two-hop relay ({config.relay_messages} messages)")
            result.relay_rate = await relay_rate(
                config.amqp_url, config.relay_messages, config.timeout_s
            )
            progress(f"distributed ({config.distributed_reports} reports), max then half rate")
            try:
                result.distributed_max, result.distributed_half = await distributed_passes(
                    config, workdir
                )
            except (ExecflowError, OSError, TimeoutError) as exc:
                result.notes.append(f"distributed pass failed: {type(exc).__name__}: {exc}")
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    return result


def machine() -> str:
    """One line about the host the figures come from."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"load average {load:.2f} at the end of the run"
    )
