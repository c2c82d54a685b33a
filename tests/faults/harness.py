"""Fault-injection harness: the distributed pipeline as real processes, driven, checked.

One ``PipelineRun`` owns a fresh temp directory, a unique queue prefix, a unique Redis
key prefix and a fresh PostgreSQL database, on the servers it is given (the fault tests
give it their throwaway ones, ``tests/faults/services.py``). It starts ``execflow run all`` (the
supervisor and its dispatcher, seven workers and db writer, each a real process) and
``execflow simulate --orders N --rate R`` (the LP simulator plus a scenario driver that
places orders at a steady rate through the intake, then closes everything and waits for
every order to be final). While they run it samples the number of events in the
database (the applied throughput). A test injects one fault in between.

``verify()`` then stops everything and checks, from the durable records:

* confirmed: every exec_id the LP published with a broker confirm (``SIM:REPORT_SENT``
  in the simulator's own log directory, kept apart from the pipeline's so a logging
  fault cannot hide one);
* every confirmed exec_id is applied (an event in the database, and in the order's
  exec_id ledger in the state store), or in the DLQ with a reason, or was legitimately
  not applied (an LP acknowledgement the routing table ignores, a stale report);
  applied and dead-lettered never overlap;
* applied twice: an exec_id twice in one order's ledger, or the state ledger and the
  database disagreeing on it; ``execflow reconcile`` reports 0 differences (a margin
  or balance applied twice would differ from the events);
* recovery: the first 2 s window after the fault cleared whose event rate is at least
  80 % of the rate before the fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from execflow.backends.bus import H_REASON, Bus
from execflow.backends.database import StoredDeadLetter
from execflow.backends.factory import make_bus, make_database, make_state_store
from execflow.backends.state import StateStore
from execflow.clock import SystemClock
from execflow.domain.codec import instrument_to_dict
from execflow.domain.enums import OrderStatus
from execflow.domain.reports import parse_message
from execflow.errors import ReportError
from execflow.logs import setup_logging
from execflow.pipeline.dlq import drain_dlq
from execflow.pipeline.seed import load_seed
from execflow.settings import Settings
from execflow.sim.feed import DEFAULT_SYMBOLS, PriceFeed
from execflow.sim.refdata import demo_seed
from tests.faults.logcheck import check_dir
from tests.faults.stress import deadline_s, die_with_parent
from tests.services import AMQP_URL, REDIS_URL

__all__ = [
    "DEFAULT_SERVERS",
    "EXECFLOW",
    "Endpoints",
    "PipelineRun",
    "RunConfig",
    "SplitEndpoints",
    "Verdict",
]

EXECFLOW = (sys.executable, "-c", "from execflow.cli.app import main; main()")
CHILDREN = (
    "db_writer",
    *(f"worker_{k}" for k in ("open", "close", "pending", "cancel", "reject", "stoploss")),
    "worker_takeprofit",
    "dispatcher",
)
_TAGS = {"db_writer": "DBWRITER", "dispatcher": "DISPATCH"}
_FIELD = re.compile(r' ([A-Za-z_][A-Za-z0-9_.]*)=("(?:[^"\\]|\\.)*"|\S+)')
_SAMPLE_S = 0.25
WINDOW_S = 2.0
RECOVERY_SHARE = 0.8
DRIVER_MIN_TIMEOUT_S = 240.0  # what every short fault run was sized for
DRIVER_SLACK = 1.5  # a loaded box places slower than the nominal rate
DRIVER_GRACE_S = 120.0  # start-up, the last reports, the driver's own reconcile


class Endpoints(Protocol):
    """The broker and state store a run uses (its database comes as a URL of its own)."""

    @property
    def amqp_url(self) -> str:
        """The broker."""
        ...

    @property
    def redis_url(self) -> str:
        """The state store (a run adds its own key prefix)."""
        ...

    def rabbitmqctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl`` against that broker's node."""
        ...


@dataclass(frozen=True, slots=True)
class _DefaultServers:
    """The servers on the default ports: only for runs that disrupt nothing (the soak)."""

    amqp_url: str = AMQP_URL
    redis_url: str = REDIS_URL

    def rabbitmqctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl`` against the default node."""
        return subprocess.run(
            ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=False
        )


DEFAULT_SERVERS: Endpoints = _DefaultServers()


@dataclass(frozen=True, slots=True)
class SplitEndpoints:
    """A broker and a state store from different places: a cluster of the test's own for
    one of them, the suite's throwaway server for the other."""

    amqp_url: str
    redis_url: str  # a run adds ``?key_prefix=``: a cluster's URL ends with ``/``
    rabbitmqctl: Callable[..., subprocess.CompletedProcess[str]]  # against the broker's node


def write_instrument_seed(path: Path) -> None:
    """The simulator's instruments as a seed file: what a rebuild re-caches after a state loss.

    (The database keeps no instrument configs; ``EXECFLOW_SEED_FILE`` is how a deployment
    gets them back when Redis restarts empty.)
    """

    async def no_sink(_symbol: str, _data: dict[str, Any]) -> None:
        return None

    feed = PriceFeed(DEFAULT_SYMBOLS, no_sink, random.Random(0), SystemClock())
    seed = demo_seed(1, random.Random(0), feed)
    lines: list[str] = []
    for symbol in sorted({i.symbol for i in seed.instruments}):
        lines.append(f"[symbols.{symbol}]")
    for instrument in seed.instruments:
        lines.append(f"[groups.{instrument.group}.{instrument.symbol}]")
        for key, value in instrument_to_dict(instrument).items():
            if key not in ("group", "symbol"):
                lines.append(f"{key} = {json.dumps(str(value))}")
    path.write_text("\n".join(lines) + "\n")
    assert set(load_seed(path).instruments) == set(seed.instruments)


def fields_of(line: str) -> dict[str, str]:
    """The ``key=value`` fields of a text log line (quoted values decoded)."""
    out = {}
    for key, raw in _FIELD.findall(line):
        out[key] = orjson.loads(raw) if raw.startswith('"') else raw
    return out


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Size and pace of one run."""

    orders: int = 900
    rate_per_s: float = 40.0
    accounts: int = 30
    seed: int = 7
    reject_rate: float = 0.02
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    malformed_rate: float = 0.0
    # Closing out waits while orders keep ending, and gives up after a stall of
    # ``settle_stall_s`` or ``settle_timeout_s`` in all. A fixed 30 s, the limit before,
    # ended kill -9 runs on a machine loaded from outside with orders about to end (5 of
    # 181 not final, the books clean); a run that settles within 30 s never stalls for 30 s,
    # so it settles as before, and a stalled one still gives up after 30 s of no progress.
    settle_timeout_s: float = field(default_factory=lambda: deadline_s(120.0))
    settle_stall_s: float = field(default_factory=lambda: deadline_s(30.0))
    env: Mapping[str, str] = field(default_factory=dict)
    log_dir: Path | None = None  # the pipeline's log directory (default: <root>/logs)


@dataclass(slots=True)
class Verdict:
    """What one run ended with (a row of the README table)."""

    fault: str
    confirmed: int = 0
    applied: int = 0
    lost: list[str] = field(default_factory=list)
    applied_twice: list[str] = field(default_factory=list)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    dlq_confirmed: int = 0
    ignored_or_stale: int = 0
    reconcile_exit: int | None = None
    reconcile_output: str = ""
    driver_exit: int | None = None
    driver_output: str = ""
    pre_rate: float = 0.0
    recovery_s: float | None = None
    # how long the event count still rose after the fault cleared: a recovery_s of None
    # with this near 0 means the stream was over by then (a run sized too short for its
    # fault), not a pipeline that never came back
    stream_after_clear_s: float | None = None
    restarts: int = 0
    unsettled: int = 0
    intake_errors: int = 0
    unlogged: list[str] = field(default_factory=list)
    # statuses of the orders not final once the pipeline is quiet: OPEN / PENDING wait for
    # the driver's close or cancel (it gave up), the others for an answer that never came
    not_final: Counter[str] = field(default_factory=Counter)
    log_problems: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The README table row."""
        return {
            "fault": self.fault,
            "confirmed": self.confirmed,
            "lost": len(self.lost),
            "applied_twice": len(self.applied_twice),
            "dlq": sum(self.dead_lettered.values()),
            "dlq_reasons": dict(self.dead_lettered),
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 1),
            "stream_after_clear_s": (
                None if self.stream_after_clear_s is None else round(self.stream_after_clear_s, 1)
            ),
            "pre_fault_events_per_s": round(self.pre_rate, 1),
            "restarts": self.restarts,
            "unsettled": self.unsettled,
            "not_final": dict(self.not_final),
            "unlogged": len(self.unlogged),
        }


class PipelineRun:
    """``execflow run all`` + ``execflow simulate`` on unique names; see the module doc."""

    def __init__(
        self, root: Path, pg_url: str, config: RunConfig, servers: Endpoints = DEFAULT_SERVERS
    ) -> None:
        self.root = root
        self.config = config
        self.servers = servers
        tag = uuid.uuid4().hex[:10]
        self.prefix = f"eff.{tag}"
        self.key_prefix = f"eff{tag}"
        self.log_dir = config.log_dir or root / "logs"
        self.sim_log_dir = root / "simlogs"
        self.seed_file = root / "instruments.toml"
        write_instrument_seed(self.seed_file)
        self.settings = Settings(
            broker_url=servers.amqp_url,
            state_url=f"{servers.redis_url}?key_prefix={self.key_prefix}",
            database_url=pg_url,
            queue_prefix=self.prefix,
            log_dir=self.log_dir,
        )
        self.env = {
            **os.environ,
            "EXECFLOW_BROKER_URL": self.settings.broker_url,
            "EXECFLOW_STATE_URL": self.settings.state_url,
            "EXECFLOW_DATABASE_URL": pg_url,
            "EXECFLOW_QUEUE_PREFIX": self.prefix,
            "EXECFLOW_LOG_DIR": str(self.log_dir),
            "EXECFLOW_SEED_FILE": str(self.seed_file),
            "EXECFLOW_SHUTDOWN_TIMEOUT_S": "3",
            "EXECFLOW_RETRY_BASE_DELAY_S": "0.05",
            "EXECFLOW_RETRY_MAX_DELAY_S": "1",
            "EXECFLOW_DB_BATCH_TIMEOUT_S": "0.02",
            "EXECFLOW_AMQP_HEARTBEAT_S": "5",
            "EXECFLOW_REDIS_TIMEOUT_S": "2",
            **config.env,
        }
        self.supervisor: asyncio.subprocess.Process | None = None
        self.driver: asyncio.subprocess.Process | None = None
        self.samples: list[tuple[float, int]] = []
        self.fault_at: float | None = None
        self.cleared_at: float | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._sampling = asyncio.Event()
        self.letters: list[StoredDeadLetter] = []

    # -- processes ------------------------------------------------------------------------
    async def start(self, start_timeout_s: float = 60.0) -> None:
        """Start the supervised pipeline, wait until every child consumes (at most
        ``start_timeout_s``), start the driver."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.sim_log_dir.mkdir(parents=True, exist_ok=True)
        # the child keeps its own copy of the descriptor: ours is closed once it runs
        with (self.root / "supervisor.out").open("wb") as out:
            self.supervisor = await asyncio.create_subprocess_exec(
                *EXECFLOW, "run", "all", "--max-backoff", "1",
                env=self.env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # its supervisor stops the children on SIGTERM
            )  # fmt: skip
        async with asyncio.timeout(deadline_s(start_timeout_s)):
            while not await asyncio.to_thread(self.all_started):  # noqa: ASYNC110 - other processes
                await asyncio.sleep(0.2)
        self._sampler = asyncio.create_task(self._sample(), name="fault-sampler")
        config = self.config
        with (self.root / "simulate.out").open("wb") as out:
            self.driver = await asyncio.create_subprocess_exec(
                *EXECFLOW, "simulate",
                "--orders", str(config.orders), "--rate", str(config.rate_per_s),
                "--accounts", str(config.accounts), "--seed", str(config.seed),
                "--reject-rate", str(config.reject_rate),
                "--duplicate-rate", str(config.duplicate_rate),
                "--reorder-rate", str(config.reorder_rate),
                "--malformed-rate", str(config.malformed_rate),
                "--settle-timeout", str(config.settle_timeout_s),
                "--settle-stall", str(config.settle_stall_s),
                env={**self.env, "EXECFLOW_LOG_DIR": str(self.sim_log_dir)},
                stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
            )  # fmt: skip

    def all_started(self) -> bool:
        """True when every supervised child logged its consumer start."""
        return all(self._started(name) for name in CHILDREN)

    def _started(self, name: str) -> bool:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return False
        tag = _TAGS.get(name) or name.removeprefix("worker_").upper()
        return f"[{tag}:STARTED]" in path.read_text(errors="replace")

    def child_pid(self, name: str) -> int:
        """The pid of the latest incarnation of a supervised child."""
        text = (self.log_dir / "supervisor.log").read_text(errors="replace")
        pids = [
            int(fields_of(line)["pid"])
            for line in text.splitlines()
            if "[SUPERVISOR:CHILD_STARTED]" in line and fields_of(line).get("child") == name
        ]
        if not pids:
            raise LookupError(f"{name} never started")
        return pids[-1]

    def supervisor_lines(self, tag: str) -> list[str]:
        """Lines of ``supervisor.log`` with ``[tag]``."""
        text = (self.log_dir / "supervisor.log").read_text(errors="replace")
        return [line for line in text.splitlines() if f"[{tag}]" in line]

    def consuming_since_restart(self, name: str) -> bool:
        """True when the child's log shows a consumer start after its last process start."""
        path = self.log_dir / f"{name}.log"
        tag = _TAGS.get(name) or name.removeprefix("worker_").upper()
        text = path.read_text(errors="replace") if path.exists() else ""
        last_start = text.rfind("[PROCESS:START]")
        return last_start >= 0 and text.find(f"[{tag}:STARTED]", last_start) >= 0

    def lines_with(self, needle: str, *, with_driver: bool = False) -> list[str]:
        """Every pipeline log line (all files) containing ``needle``; with ``with_driver``,
        the driver's (intake, simulator) lines too."""
        dirs = [self.log_dir, self.sim_log_dir] if with_driver else [self.log_dir]
        return [
            line
            for directory in dirs
            for path in sorted(directory.glob("*.log"))
            for line in path.read_text(errors="replace").splitlines()
            if needle in line
        ]

    def restarts(self) -> int:
        """Children the supervisor restarted after they exited."""
        text = (self.log_dir / "supervisor.log").read_text(errors="replace")
        return text.count("[SUPERVISOR:CHILD_EXITED]")

    async def wait_child_restarted(self, name: str, old_pid: int, timeout_s: float = 30) -> int:
        """Wait until the supervisor started ``name`` again and it consumes; its new pid."""
        async with asyncio.timeout(deadline_s(timeout_s)):
            while True:
                pid = await asyncio.to_thread(self.child_pid, name)
                if pid != old_pid:
                    return pid
                await asyncio.sleep(0.1)

    # -- throughput -------------------------------------------------------------------------
    async def _sample(self) -> None:
        database = make_database(self.settings)
        connected = False
        try:
            while True:
                try:
                    if not connected:
                        await database.connect()
                        connected = True
                    count = await database.count_events()
                    self.samples.append((time.monotonic(), count))
                    self._sampling.set()
                except Exception:
                    # the database may be the fault under test: keep the last figure
                    if connected:
                        with contextlib.suppress(Exception):
                            await database.close()
                        connected = False
                await asyncio.sleep(_SAMPLE_S)
        finally:
            if connected:
                await database.close()

    def events(self) -> int:
        """The latest sampled event count."""
        return self.samples[-1][1] if self.samples else 0

    async def wait_events(self, count: int, timeout_s: float = 60) -> None:
        """Wait until the database holds at least ``count`` events (mid-stream marker)."""
        async with asyncio.timeout(deadline_s(timeout_s)):
            while self.events() < count:
                self._check_driver()
                await asyncio.sleep(0.1)

    def _check_driver(self) -> None:
        if self.driver is not None and self.driver.returncode is not None:
            raise AssertionError(
                f"the driver exited early ({self.driver.returncode}): {self._driver_output()}"
            )

    def mark_fault(self) -> None:
        """The fault starts now."""
        self.fault_at = time.monotonic()

    def mark_cleared(self) -> None:
        """The fault is over now."""
        self.cleared_at = time.monotonic()

    def rate_between(self, start: float, end: float) -> float:
        """Events per second between two monotonic times (from the samples)."""
        inside = [(t, n) for t, n in self.samples if start <= t <= end]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return 0.0
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    def recovery(self) -> tuple[float, float | None]:
        """(pre-fault rate, seconds from clearing to the first window at >= 80 % of it)."""
        if self.fault_at is None or self.cleared_at is None:
            return 0.0, None
        pre = self.rate_between(self.fault_at - 4.0, self.fault_at)
        for t, _ in self.samples:
            if t < self.cleared_at:
                continue
            if self.rate_between(t, t + WINDOW_S) >= RECOVERY_SHARE * pre:
                return pre, max(0.0, t + WINDOW_S - self.cleared_at)
        return pre, None

    def stream_after_clear(self) -> float | None:
        """Seconds from clearing to the last sample at which the event count had risen."""
        if self.cleared_at is None:
            return None
        last_rise = self.cleared_at
        for (_, before), (t, count) in itertools.pairwise(self.samples):
            if t > self.cleared_at and count > before:
                last_rise = t
        return last_rise - self.cleared_at

    # -- the end ------------------------------------------------------------------------------
    def _driver_output(self) -> str:
        path = self.root / "simulate.out"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def driver_timeout_s(self) -> float:
        """How long the driver may take: placing (with slack) and settling, at least 240 s."""
        config = self.config
        placing_s = config.orders / config.rate_per_s if config.rate_per_s > 0 else 0.0
        # a 30-minute soak places for 30 minutes: a fixed 240 s ran out before it settled
        needed_s = deadline_s(placing_s * DRIVER_SLACK + DRIVER_GRACE_S) + config.settle_timeout_s
        return max(deadline_s(DRIVER_MIN_TIMEOUT_S), needed_s)

    async def wait_driver(self, timeout_s: float | None = None) -> int:
        """Wait for the scenario (it settles every order and reconciles) to finish."""
        assert self.driver is not None
        async with asyncio.timeout(deadline_s(timeout_s) if timeout_s else self.driver_timeout_s()):
            return await self.driver.wait()

    async def wait_quiet(self, timeout_s: float = 90.0, quiet_s: float = 2.0) -> None:
        """Wait until the pipeline's queues are empty and the event count stands still."""
        async with self.backends() as (bus, _state):
            queues = [q for q in bus.queues.all() if q not in (bus.dlq_name,)]
            queues.remove(bus.queues.provider_requests)  # the LP (gone with the driver) reads it
            loop = asyncio.get_running_loop()
            still_since = loop.time()
            last = -1
            async with asyncio.timeout(deadline_s(timeout_s)):
                while loop.time() - still_since < quiet_s:
                    await asyncio.sleep(0.25)
                    depth = 0
                    for queue in queues:
                        with contextlib.suppress(Exception):
                            depth += await bus.queue_depth(queue)
                    if depth or self.events() != last:
                        still_since = loop.time()
                    last = self.events()

    async def stop(self) -> None:
        """Stop the driver (if still running), the supervisor and its children, the sampler."""
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        for process in (self.driver, self.supervisor):
            if process is None or process.returncode is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(30):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if self.supervisor is not None:
            # a child the supervisor could not reap (it was killed first) must not linger
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.supervisor.pid, signal.SIGKILL)

    async def verify(self, fault: str) -> Verdict:
        """Wait for the driver, stop everything, then check (module docstring)."""
        verdict = Verdict(fault)
        try:
            verdict.driver_exit = await self.wait_driver()
            # whatever the driver did, the pipeline finishes what it holds before the stop
            await self.wait_quiet()
        finally:
            verdict.pre_rate, verdict.recovery_s = self.recovery()
            verdict.stream_after_clear_s = self.stream_after_clear()
            await self.stop()
        verdict.driver_output = self._driver_output()
        found = re.search(r"not final (\d+)", verdict.driver_output)
        verdict.unsettled = int(found.group(1)) if found else -1
        verdict.intake_errors = await asyncio.to_thread(self.intake_errors)
        verdict.restarts = self.restarts()
        reconcile = await asyncio.to_thread(
            subprocess.run, [*EXECFLOW, "reconcile"], env=self.env,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        verdict.reconcile_exit = reconcile.returncode
        verdict.reconcile_output = (reconcile.stdout + reconcile.stderr)[-3000:]
        await self._check_records(verdict)
        problems = await asyncio.to_thread(check_dir, self.log_dir)
        verdict.log_problems = [f"{p.file}:{p.number}: {p.why}" for p in problems.problems]
        return verdict

    async def _check_records(self, verdict: Verdict) -> None:
        confirmed, statuses = await asyncio.to_thread(self._confirmed)
        verdict.confirmed = len(confirmed)
        database = make_database(self.settings)
        state = make_state_store(self.settings)
        bus = make_bus(self.settings)
        await database.connect()
        await state.connect()
        await bus.connect()
        try:
            with setup_logging(self.settings, "supervisor", bridge=False) as logs:
                await drain_dlq(bus, database, logs.logger("supervisor"))
            dead = await database.list_dead_letters(include_replayed=True, limit=1_000_000)
            self.letters = dead
            dlq_ids: set[str] = set()
            for letter in dead:
                verdict.dead_lettered[letter.reason] += 1
                assert letter.reason and letter.headers.get(H_REASON) == letter.reason
                exec_id = _exec_id_of(letter.body)
                if exec_id is not None:
                    dlq_ids.add(exec_id)
            db_ids: dict[str, Counter[str]] = {}
            async for event in database.iter_events():
                if event.exec_id:
                    db_ids.setdefault(event.order_id, Counter())[event.exec_id] += 1
            ledger: dict[str, list[str]] = {}
            for account_id in await state.list_accounts():
                for order_id, doc in (await state.list_orders(account_id)).items():
                    ledger[order_id] = list(doc.data.get("applied_exec_ids") or [])
                    if not OrderStatus(doc.data["status"]).is_final:
                        verdict.not_final[doc.data["status"]] += 1
        finally:
            await bus.close()
            await state.close()
            await database.close()
        applied = {e for counts in db_ids.values() for e in counts}
        verdict.applied = len(applied)
        for order_id, ids in ledger.items():
            verdict.applied_twice.extend(e for e, n in Counter(ids).items() if n > 1)
            in_db = set(db_ids.get(order_id, ()))
            # the state applied it but the database has no event, or the other way round
            verdict.applied_twice.extend(sorted(set(ids) ^ in_db))
        verdict.dlq_confirmed = len(confirmed & dlq_ids)
        overlap = applied & dlq_ids & confirmed
        verdict.applied_twice.extend(sorted(overlap))
        not_applied = confirmed - applied - dlq_ids
        skipped = await asyncio.to_thread(self._skipped)
        # LP acknowledgements (status PENDING of a request that needs none) are ignored by
        # design; stale reports (the order already final) are skipped by design.
        legit = {e for e in not_applied if e in skipped or statuses.get(e) == "PENDING"}
        verdict.ignored_or_stale = len(legit)
        verdict.lost = sorted(not_applied - legit)
        if verdict.lost:
            seen = await asyncio.to_thread(self._mentioned, set(verdict.lost))
            verdict.unlogged = sorted(set(verdict.lost) - seen)

    def _confirmed(self) -> tuple[set[str], dict[str, str]]:
        ids: set[str] = set()
        statuses: dict[str, str] = {}
        for path in sorted(self.sim_log_dir.glob("simulator.log*")):
            for line in path.read_text(errors="replace").splitlines():
                if "[SIM:REPORT_SENT]" in line:
                    found = fields_of(line)
                    ids.add(found["exec_id"])
                    statuses[found["exec_id"]] = found.get("status", "")
        return ids, statuses

    def _mentioned(self, exec_ids: set[str]) -> set[str]:
        """Which of ``exec_ids`` a worker's log mentions (an outcome line survived)."""
        found: set[str] = set()
        for path in self.log_dir.glob("worker_*.log*"):
            if path.suffix == ".gz":
                continue
            for exec_id in re.findall(r"exec_id=(\S+)", path.read_text(errors="replace")):
                if exec_id in exec_ids:
                    found.add(exec_id)
        return found

    def _skipped(self) -> set[str]:
        out: set[str] = set()
        for path in self.log_dir.glob("*.log*"):
            if path.suffix == ".gz":
                continue
            for line in path.read_text(errors="replace").splitlines():
                if ":SKIP:STALE]" in line or "[DISPATCH:IGNORED]" in line:
                    exec_id = fields_of(line).get("exec_id")
                    if exec_id:
                        out.add(exec_id)
        return out

    @contextlib.asynccontextmanager
    async def backends(self) -> AsyncIterator[tuple[Bus, StateStore]]:
        """This run's bus and state store, opened from the test process."""
        bus = make_bus(self.settings)
        state = make_state_store(self.settings)
        await bus.connect()
        await state.connect()
        try:
            yield bus, state
        finally:
            await state.close()
            await bus.close()

    def sent_reports(self) -> list[dict[str, str]]:
        """The fields of every ``SIM:REPORT_SENT`` line so far."""
        return [
            fields_of(line)
            for path in sorted(self.sim_log_dir.glob("simulator.log*"))
            for line in path.read_text(errors="replace").splitlines()
            if "[SIM:REPORT_SENT]" in line
        ]

    async def dead_letters(self) -> list[StoredDeadLetter]:
        """The dead letters ``verify`` moved from the DLQ into the database."""
        return self.letters

    def sim_lines_with(self, needle: str) -> list[str]:
        """Lines of the simulator's own logs containing ``needle``."""
        return [
            line
            for path in sorted(self.sim_log_dir.glob("*.log"))
            for line in path.read_text(errors="replace").splitlines()
            if needle in line
        ]

    def intake_errors(self) -> int:
        """Driver calls that failed on an outage: intake calls (the client got an error)
        and LP publishes given up (``SIM:ERROR``)."""
        lines = self.sim_lines_with("[INTAKE:ERROR]") + self.sim_lines_with("[SIM:ERROR]")
        return len(lines)

    async def cleanup(self, queues: bool = True) -> None:
        """Remove this run's Redis keys and (``queues``) its queues, delay queues too."""
        state = make_state_store(self.settings)
        try:
            await state.connect()
            await state.flush_all()
            await state.close()
        except Exception:
            pass
        if not queues:
            return
        listed = await asyncio.to_thread(self.servers.rabbitmqctl, "-q", "list_queues", "name")
        names = {n.strip() for n in listed.stdout.splitlines() if n.startswith(self.prefix + ".")}
        if names:
            from tests.backends.conftest import delete_queues

            with contextlib.suppress(Exception):
                await delete_queues(names, self.servers.amqp_url)


def _exec_id_of(body: bytes) -> str | None:
    """The exec_id of a dead-lettered body: an LP report, or a worker's routed envelope."""
    with contextlib.suppress(orjson.JSONDecodeError, TypeError, AttributeError):
        data = orjson.loads(body)
        if isinstance(data, dict) and isinstance(data.get("report"), dict):
            value = data["report"].get("exec_id")
            return str(value) if value else None
    try:
        parsed = parse_message(body)
    except ReportError:
        return None
    return getattr(parsed, "exec_id", None)
