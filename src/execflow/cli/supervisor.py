"""``execflow run all``: every pipeline process on one host, supervised.

Starts the dispatcher, the seven workers (``--instances`` each), the db writer, the
periodic reconciler (``--reconcile-every``, 0 to leave it out) and, with
``--simulator``, the LP simulator, each as its own ``execflow`` process on the
configured broker, state store and database (children inherit the environment and the
``--config`` file, so they read the same settings). A child that exits is restarted
after a backoff that doubles up to ``--max-backoff`` (and resets once a child has run
for a minute). SIGINT or SIGTERM stops every child with SIGTERM (SIGKILL after the
shutdown timeout), then the supervisor exits. Everything it does goes to
``supervisor.log``; each child logs to its own catalog file.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import typer
from prometheus_client.multiprocess import mark_process_dead

from execflow.backends.bus import WORKER_KINDS
from execflow.cli.context import CliState, settings_from
from execflow.logs.events import EventLogger
from execflow.logs.setup import setup_logging
from execflow.metrics import Metrics, MetricsServer
from execflow.settings import PROMETHEUS_MULTIPROC_DIR, Settings, environment_with

__all__ = [
    "ChildSpec",
    "Supervisor",
    "child_environment",
    "child_specs",
    "in_memory_backends",
    "refuse_in_memory_backends",
    "run_all",
]

_ENTRY = "from execflow.cli.app import main; main()"
_STABLE_S = 60.0


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One supervised process: a display name and the ``execflow`` arguments."""

    name: str
    args: tuple[str, ...]


def child_specs(
    instances: int,
    simulator: bool,
    sim_args: Sequence[str] = (),
    reconcile_every_s: float = 0.0,
) -> list[ChildSpec]:
    """Dispatcher, db writer, ``instances`` of every worker, the simulator and the
    periodic reconciler if asked."""
    specs = [ChildSpec("db_writer", ("run", "db-writer"))]
    for kind in WORKER_KINDS:
        for number in range(1, instances + 1):
            name = f"worker_{kind}" if number == 1 else f"worker_{kind}-{number}"
            specs.append(ChildSpec(name, ("run", "worker", kind, "--instance", str(number))))
    specs.append(ChildSpec("dispatcher", ("run", "dispatcher")))
    if simulator:
        specs.append(ChildSpec("simulator", ("simulate", *sim_args)))
    if reconcile_every_s > 0:
        specs.append(ChildSpec("reconciler", ("reconcile", "--every", str(reconcile_every_s))))
    return specs


class Supervisor:
    """Keeps a set of child processes running until told to stop."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        log: EventLogger,
        *,
        config_file: Path | None = None,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        stop_timeout_s: float = 15.0,
        env: Mapping[str, str] | None = None,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self._specs = list(specs)
        self._on_exit = on_exit
        self._env = dict(env) if env is not None else None
        self._log = log
        self._config_file = config_file
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._stop_timeout_s = stop_timeout_s
        self._stopping = asyncio.Event()
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self.restarts: dict[str, int] = {s.name: 0 for s in specs}

    def pids(self) -> dict[str, int]:
        """The running children by name (for their ``process_*`` metrics)."""
        return {name: process.pid for name, process in self._children.items()}

    def argv(self, spec: ChildSpec) -> list[str]:
        """The command line of a child (same interpreter, same config file)."""
        root = ["--config", str(self._config_file)] if self._config_file is not None else []
        return [sys.executable, "-c", _ENTRY, *root, *spec.args]

    async def run(self, stop: asyncio.Event) -> None:
        """Start every child, keep them running until ``stop`` is set, then stop them."""
        self._log.info("SUPERVISOR:START", children=len(self._specs), pid=os.getpid())
        keepers = [asyncio.create_task(self._keep(spec), name=spec.name) for spec in self._specs]
        await stop.wait()
        self._stopping.set()
        self._log.info("SUPERVISOR:STOPPING", children=len(self._children))
        await self._terminate_all()
        await asyncio.gather(*keepers, return_exceptions=True)
        self._log.info("SUPERVISOR:STOPPED", restarts=sum(self.restarts.values()))

    async def _keep(self, spec: ChildSpec) -> None:
        backoff = self._initial_backoff_s
        while not self._stopping.is_set():
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(*self.argv(spec), env=self._env)
            self._children[spec.name] = process
            self._log.info("SUPERVISOR:CHILD_STARTED", child=spec.name, pid=process.pid)
            code = await process.wait()
            self._children.pop(spec.name, None)
            if self._on_exit is not None:
                self._on_exit(process.pid)
            ran_s = time.monotonic() - started
            if self._stopping.is_set():
                self._log.info("SUPERVISOR:CHILD_STOPPED", child=spec.name, exit_code=code)
                return
            if ran_s >= _STABLE_S:
                backoff = self._initial_backoff_s
            self.restarts[spec.name] += 1
            self._log.warning(
                "SUPERVISOR:CHILD_EXITED",
                child=spec.name,
                exit_code=code,
                ran_s=round(ran_s, 3),
                restart_in_s=backoff,
                restarts=self.restarts[spec.name],
            )
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
            except TimeoutError:
                backoff = min(backoff * 2, self._max_backoff_s)
                continue

    async def _terminate_all(self) -> None:
        running = dict(self._children)
        for process in running.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        if not running:
            return
        waits = {name: asyncio.create_task(p.wait()) for name, p in running.items()}
        _done, late = await asyncio.wait(waits.values(), timeout=self._stop_timeout_s)
        for name, task in waits.items():
            if task in late:
                process = running[name]
                self._log.warning("SUPERVISOR:CHILD_KILLED", child=name, pid=process.pid)
                process.kill()
        if late:
            await asyncio.gather(*late, return_exceptions=True)


def child_environment(metrics_dir: Path | None) -> dict[str, str] | None:
    """The children's environment: inherited, plus the shared metrics directory if any.

    The directory goes twice: as ``EXECFLOW_METRICS_MULTIPROC_DIR`` (the setting that
    makes a child record its metrics there) and as ``PROMETHEUS_MULTIPROC_DIR`` (where
    prometheus_client, which reads only the environment, writes them).
    """
    if metrics_dir is None:
        return None
    directory = str(metrics_dir)
    return environment_with(
        EXECFLOW_METRICS_MULTIPROC_DIR=directory, **{PROMETHEUS_MULTIPROC_DIR: directory}
    )


def in_memory_backends(settings: Settings) -> list[str]:
    """The settings among ``broker_url`` / ``state_url`` that name a ``memory://`` backend."""
    urls = {"broker_url": settings.broker_url, "state_url": settings.state_url}
    return [name for name, url in urls.items() if url.startswith("memory://")]


def refuse_in_memory_backends(settings: Settings) -> None:
    """Stop ``run all`` with one line (exit 2) when a backend lives in one process's memory.

    Each child is its own process: with a ``memory://`` broker or state store every one
    of them would get a private, empty copy, and none could hand a message to another.
    """
    names = in_memory_backends(settings)
    if not names:
        return
    env = " and ".join(f"EXECFLOW_{name.upper()}" for name in names)
    sys.stderr.write(
        f"execflow: run all refused: {' and '.join(names)} = memory://, an in-memory backend "
        "that lives inside one process, so the separate processes run all starts could not "
        f"pass a message to each other; set {env} to RabbitMQ (amqp://) / Redis (redis://), "
        "or run everything in one process with `execflow demo`\n"
    )
    sys.stderr.flush()
    raise typer.Exit(2)


def run_all(
    ctx: typer.Context,
    instances: int = typer.Option(1, "--instances", "-n", min=1, help="Instances per worker."),
    simulator: bool = typer.Option(False, "--simulator", help="Also run the LP simulator."),
    sim_reject_rate: float = typer.Option(0.02, min=0, max=1, help="Simulator reject share."),
    max_backoff: float = typer.Option(30.0, min=0.1, help="Longest wait before a restart (s)."),
    reconcile_every: float = typer.Option(
        60.0,
        min=0,
        help="Also run `execflow reconcile --every S` (its result is a metric); 0: do not.",
    ),
) -> None:
    """Run and supervise every pipeline process of this host until SIGINT / SIGTERM."""
    settings = settings_from(ctx)
    refuse_in_memory_backends(settings)
    root = ctx.find_root().obj
    config_file = root.config_file if isinstance(root, CliState) else None
    specs = child_specs(
        instances, simulator, ("--reject-rate", str(sim_reject_rate)), reconcile_every
    )
    metrics_dir: Path | None = None
    metrics: Metrics | None = None
    server: MetricsServer | None = None
    if settings.metrics_port is not None:
        # Children write their values into one fresh directory (named in their
        # environment); the supervisor serves the aggregate on the configured port
        # (prometheus_client's multiprocess mode).
        metrics_dir = Path(tempfile.mkdtemp(prefix="execflow-metrics-"))
        metrics = Metrics("supervisor", aggregate_dir=metrics_dir)
        server = MetricsServer(metrics, settings.metrics_host, settings.metrics_port).start()
    with setup_logging(settings, "supervisor", bridge=False) as logs:
        log = logs.logger("supervisor")
        if server is not None:
            log.info("SUPERVISOR:METRICS", host=server.host, port=server.port, dir=metrics_dir)
        supervisor = Supervisor(
            specs,
            log,
            config_file=config_file,
            max_backoff_s=max_backoff,
            stop_timeout_s=settings.shutdown_timeout_s + 5.0,
            env=child_environment(metrics_dir),
            on_exit=None if metrics_dir is None else _forget_values_of(metrics_dir),
        )
        if metrics is not None:
            own = os.getpid()
            metrics.watch_processes(lambda: {"supervisor": own, **supervisor.pids()})

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()

            def on_signal(sig: signal.Signals) -> None:
                log.info("SUPERVISOR:SIGNAL", signal=sig.name)
                stop.set()

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, on_signal, sig)
            try:
                await supervisor.run(stop)
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

        try:
            asyncio.run(main())
        finally:
            if server is not None:
                server.stop()
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)


def _forget_values_of(metrics_dir: Path) -> Callable[[int], None]:
    """A child's live gauges (up, queue depth...) leave the aggregate when it exits."""

    def forget(pid: int) -> None:
        mark_process_dead(pid, str(metrics_dir))  # type: ignore[no-untyped-call]

    return forget
