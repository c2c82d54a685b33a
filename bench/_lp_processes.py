"""The LP side of ``bench/fix_bench.py`` in processes of its own (not a bench of its own).

The simulated LP as a FIX acceptor (``fix_bench.py --serve-lp PORT``, every pass) or
consuming ``provider_requests`` on RabbitMQ (``--serve-bus-lp``, the baseline of
``--gateway-process``), and the LP gateway as a broker runs it: ``execflow run lp-gateway
--lp sim``, its settings in ``EXECFLOW_*`` variables. ``fix_bench.py`` imports this module
by name: a script run as ``python bench/<script>.py`` has ``bench/`` first on ``sys.path``
(see ``_workload.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from execflow.apps.bench import DEFAULT_AMQP_URL, DEFAULT_REDIS_URL
from execflow.clock import SystemClock
from execflow.logs.catalog import file_name
from execflow.logs.setup import setup_logging
from execflow.pipeline.services import open_services
from execflow.settings import Settings, load_settings
from execflow.sim.config import LatencyModel, LpConfig
from execflow.sim.feed import DEFAULT_SYMBOLS, PriceFeed
from execflow.sim.runtime import Simulator
from execflow.sim.viafix import free_port

PLAIN_LP = LpConfig(latency=LatencyModel(0, 0, 0), ack_rate=0.0, slippage_rate=0.0)
FEED_SEED = 1
READY = "fix-lp-ready"
STAGES_ENV = "EXECFLOW_FIXBENCH_STAGES"  # the LP process writes its stage times there
FIX_BENCH = Path(__file__).with_name("fix_bench.py")
LP_NAME = "sim"
_LOGON_TAG = b"[LPGW:LOGON]"


def keep_core_for_lp() -> int | None:
    """Keep the last of this process's cores for the FIX LP's process: this one (the
    pipeline's, and every thread it starts from now on) runs on the others.

    A real LP is another host: its CPU is not taken from the pipeline's. On a shared
    machine the simulated LP (0.4-0.6 ms of CPU per order there) otherwise competes with the
    pipeline's threads for the same cores, which only the FIX pass pays (the bus pass's LP
    runs on its loop, and its handler's time is taken out). ``None`` on a single core.
    """
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    os.sched_setaffinity(0, cores[:-1])
    return cores[-1]


def cores_text(cores: set[int] | list[int]) -> str:
    """``0``, ``0-2`` or ``0,2``: a CPU set as ``taskset`` spells it."""
    ordered = sorted(cores)
    if ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 1:
        return f"{ordered[0]}-{ordered[-1]}"
    return ",".join(str(core) for core in ordered)


def process_cpu_s(pid: int) -> float:
    """CPU seconds process ``pid`` has used so far (Linux ``/proc``)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def _stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class LpProcess:
    """A simulated LP in a process of its own, started from ``fix_bench.py`` with ``args``."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        switch_ms: float | None = None,
        port: int = 0,
    ) -> None:
        self.port = port  # the acceptor's
        self._args = list(args)
        self._env = dict(os.environ if env is None else env)
        self._switch_ms = switch_ms
        self._process: subprocess.Popen[str] | None = None

    @classmethod
    def acceptor(
        cls,
        stages_file: Path | None = None,
        switch_ms: float | None = None,
        core: int | None = None,
    ) -> LpProcess:
        """The plain LP as a QuickFIX acceptor on a free port of 127.0.0.1 (``.port``),
        on ``core`` alone when given (``keep_core_for_lp``)."""
        port = free_port()
        env = dict(os.environ)
        if stages_file is not None:
            env[STAGES_ENV] = str(stages_file)
        args = ["--serve-lp", str(port)]
        if core is not None:
            args += ["--lp-core", str(core)]
        return cls(args, env, switch_ms, port)

    def __enter__(self) -> LpProcess:
        command = [sys.executable, str(FIX_BENCH), *self._args]
        if self._switch_ms is not None:
            command += ["--switch-interval", str(self._switch_ms)]
        policy = os.sched_getscheduler(0)
        if policy in (os.SCHED_FIFO, os.SCHED_RR):
            # under chrt: one step above the pipeline's process, as if on a host of its own
            above = os.sched_getparam(0).sched_priority + 1
            command = ["chrt", "-f", str(above), *command]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=self._env
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != READY:
            self.__exit__()
            raise RuntimeError(f"the LP process {self._args[0]} did not start")
        return self

    @property
    def pid(self) -> int:
        """The LP process's id (once started)."""
        assert self._process is not None
        return self._process.pid

    def cpu_s(self) -> float:
        """CPU seconds the LP process has used so far (its start and logon included)."""
        assert self._process is not None
        return process_cpu_s(self._process.pid)

    def __exit__(self, *_exc: object) -> None:
        if self._process is not None:
            _stop_process(self._process)


@dataclass(frozen=True)
class Servers:
    """The RabbitMQ and Redis a deployed pass runs on (``--amqp-url``, ``--redis-url``)."""

    amqp_url: str = DEFAULT_AMQP_URL
    redis_url: str = DEFAULT_REDIS_URL


def deployed_backends(servers: Servers) -> dict[str, str]:
    """One pass's RabbitMQ queue prefix and Redis key prefix, its own (the servers are shared)."""
    token = f"effixproc{uuid.uuid4().hex[:10]}"
    return {
        "broker_url": servers.amqp_url,
        "queue_prefix": token,
        "state_url": f"{servers.redis_url}?key_prefix={token}",
    }


def settings_env(settings: Settings, log_dir: Path) -> dict[str, str]:
    """The environment of a process on the same bus, state store and database as ``settings``."""
    return {
        **os.environ,
        "EXECFLOW_BROKER_URL": settings.broker_url,
        "EXECFLOW_QUEUE_PREFIX": settings.queue_prefix,
        "EXECFLOW_STATE_URL": settings.state_url,
        "EXECFLOW_DATABASE_URL": settings.database_url,
        "EXECFLOW_LOG_DIR": str(log_dir),
    }


class GatewayProcess:
    """``execflow run lp-gateway --lp sim``, configured as a broker would: ``EXECFLOW_*``."""

    def __init__(self, settings: Settings, run_dir: Path, port: int, symbols: Sequence[str]):
        log_dir = run_dir / "gateway-logs"
        lps = {
            LP_NAME: {
                "port": port,
                "sender_comp_id": "EXECFLOW",
                "target_comp_id": "SIMLP",
                "store_dir": str(run_dir / "fix"),
                "symbols": list(symbols),
            }
        }
        self._env = {**settings_env(settings, log_dir), "EXECFLOW_LPS": json.dumps(lps)}
        self._log_file = log_dir / file_name("lp_gateway", qualifier=LP_NAME)
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start the process; return once its session logged on (``LPGW:LOGON`` in its log)."""
        command = [sys.executable, "-m", "execflow", "run", "lp-gateway", "--lp", LP_NAME]
        self._process = await asyncio.to_thread(
            subprocess.Popen, command, env=self._env, stdin=subprocess.DEVNULL
        )
        try:
            await self._wait_logon(timeout_s)
        except BaseException:
            await self.stop()
            raise

    async def _wait_logon(self, timeout_s: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout_s
        while not await asyncio.to_thread(self._logged_on):
            if self._process.poll() is not None:
                raise RuntimeError(f"the gateway process exited ({self._process.returncode})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway did not log on within {timeout_s:g} s")
            await asyncio.sleep(0.05)

    def _logged_on(self) -> bool:
        return self._log_file.exists() and _LOGON_TAG in self._log_file.read_bytes()

    def cpu_s(self) -> float:
        """CPU seconds the gateway's process has used so far."""
        assert self._process is not None
        return process_cpu_s(self._process.pid)

    async def stop(self) -> None:
        """SIGTERM: the gateway stops consuming, logs out and publishes what it received."""
        if self._process is not None:
            await asyncio.to_thread(_stop_process, self._process)


async def _nowhere(_symbol: str, _data: dict[str, Any]) -> None:
    return None


def lp_feed() -> PriceFeed:
    """The LP's feed, unstarted: the same seed gives the LP processes' first quotes."""
    return PriceFeed(DEFAULT_SYMBOLS, _nowhere, random.Random(FEED_SEED), SystemClock())


class ProcessLp:
    """The LP side of a ``--gateway-process`` pass, every process of it outside the pipeline's.

    ``bus``: the simulated LP consuming ``provider_requests`` on the pass's RabbitMQ
    queues. ``fix``: the gateway's process, to the acceptor on ``port`` (started by the
    caller, as in the embedded passes). ``cpu_s``: the CPU time of the bus LP's or the
    gateway's process since it was ready.
    """

    def __init__(self, mode: str, settings: Settings, run_dir: Path, port: int | None) -> None:
        self.feed = lp_feed()
        self._settings = settings
        self._lp: LpProcess | None = None
        self._gateway: GatewayProcess | None = None
        if mode == "fix":
            assert port is not None
            self._gateway = GatewayProcess(settings, run_dir, port, self.feed.symbols)
        else:
            self._lp = LpProcess(["--serve-bus-lp"], settings_env(settings, run_dir / "lp-logs"))
        self._ready_cpu_s = 0.0

    async def start(self) -> None:
        """Start the process; return once it consumes the requests."""
        if self._gateway is not None:
            await self._gateway.start()
        elif self._lp is not None:
            await asyncio.to_thread(self._lp.__enter__)
        self._ready_cpu_s = self._cpu_total_s()

    def _cpu_total_s(self) -> float:
        if self._gateway is not None:
            return self._gateway.cpu_s()
        assert self._lp is not None
        return self._lp.cpu_s()

    def cpu_s(self) -> float:
        """CPU seconds of the LP side's process since it was ready."""
        return self._cpu_total_s() - self._ready_cpu_s

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop the process (SIGTERM: it drains what it holds)."""
        if self._gateway is not None:
            await self._gateway.stop()
        elif self._lp is not None:
            await asyncio.to_thread(self._lp.__exit__)


async def serve_bus_lp() -> None:
    """The ``--serve-bus-lp`` process: the plain LP on the bus of ``EXECFLOW_*`` until SIGTERM."""
    settings = load_settings()
    logs = await asyncio.to_thread(setup_logging, settings, "simulator", bridge=False)
    try:
        async with open_services(settings, logs) as services:
            simulator = Simulator(
                services.bus,
                services.state,
                logs.logger("simulator"),
                PLAIN_LP,
                seed=FEED_SEED,
                tick_interval_s=3600,
                clock=services.clock,
            )
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await simulator.start()
            print(READY, flush=True)
            await stop.wait()
            await simulator.stop(settings.shutdown_timeout_s)
    finally:
        await asyncio.to_thread(logs.close)
