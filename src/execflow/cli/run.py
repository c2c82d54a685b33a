"""``execflow run``: one pipeline component per process, on the configured backends.

::

    execflow run dispatcher
    execflow run worker open --instance 2
    execflow run db-writer

Each process loads the settings, sets up logging for its component and instance, logs
``PROCESS:START`` with its settings (secrets masked), rebuilds the state store from the
database if the store is empty, consumes until SIGINT or SIGTERM, stops in order (stop
intake, drain in-flight work, requeue the rest), then logs the final ``STATS`` line and
``PROCESS:STOP``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from execflow.backends.database import Database
from execflow.backends.deferred import DeferredDatabase
from execflow.backends.factory import make_database
from execflow.cli.context import settings_from
from execflow.cli.failures import process_logging
from execflow.domain.routing import Worker
from execflow.errors import ConfigError
from execflow.logs.events import EventLogger
from execflow.logs.masking import mask_value
from execflow.logs.setup import LogSystem
from execflow.pipeline.rebuild import rebuild_if_needed
from execflow.pipeline.runner import ConsumerSpec, run_consumers
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings

if TYPE_CHECKING:
    from execflow.metrics import Metrics

__all__ = ["masked_settings", "run_app", "run_with_services", "serve"]

T = TypeVar("T")

run_app = typer.Typer(
    help="Run one pipeline component as its own process (distributed deployment).",
    no_args_is_help=True,
)


def masked_settings(settings: Settings) -> dict[str, str]:
    """Every setting as text, credentials and secret-named values masked."""
    return {name: mask_value(name, str(value)) for name, value in settings.model_dump().items()}


def run_with_services(
    settings: Settings,
    component: str,
    body: Callable[[Services], Awaitable[T]],
    *,
    metrics: Metrics | None = None,
) -> T:
    """Set up logging for ``component``, open the services, run ``body``, close everything.

    A failure is logged as ``PROCESS:FAILED`` before it propagates (``process_logging``).
    """
    with process_logging(settings, component) as logs:

        async def main() -> T:
            async with open_services(settings, logs, metrics=metrics) as services:
                return await body(services)

        return asyncio.run(main())


def serve(
    settings: Settings,
    component: str,
    build: Callable[[Services], tuple[list[ConsumerSpec], Callable[[], Awaitable[None]] | None]],
    *,
    defer_database: bool = False,
) -> None:
    """Run consumers until SIGINT/SIGTERM: the body of every ``execflow run`` command.

    ``defer_database``: a component that reads the database only on a fallback path
    (dispatcher, workers) connects it on first use (``backends.deferred``), so it does
    not carry SQLAlchemy while the state store has what it needs.
    """
    with ExitStack() as stack:
        logs: LogSystem = stack.enter_context(process_logging(settings, component))
        log = logs.logger(component)
        metrics = _process_metrics(settings, component, stack)
        # every setting as a field (``instance`` among them), secrets masked
        log.info("PROCESS:START", component=component, **masked_settings(settings))
        database = None
        if defer_database:
            database = DeferredDatabase(settings.database_url, lambda: make_database(settings))
        stopped_by = asyncio.run(_serve(settings, logs, log, build, metrics, database))
        log.info("PROCESS:STOP", component=component, instance=settings.instance, signal=stopped_by)


def _process_metrics(settings: Settings, component: str, stack: ExitStack) -> Metrics | None:
    """The process's metrics if the settings ask for them (their endpoint stops with ``stack``)."""
    multiproc_dir, port = settings.metrics_multiproc_dir, settings.metrics_port
    if multiproc_dir is None and port is None:
        return None
    # prometheus_client (with http.server and wsgiref) loads only in a process that has
    # metrics: ~1.8 MB of RSS in every other one (docs/benchmarks.md, "Memory")
    from execflow.metrics import Metrics, MetricsServer

    if multiproc_dir is not None:
        # Under `run all` the supervisor serves every child's values on one port.
        return Metrics(component, multiprocess_dir=multiproc_dir)
    metrics = Metrics(component)
    if port is not None:
        server = MetricsServer(metrics, settings.metrics_host, port).start()
        stack.callback(server.stop)
    return metrics


@contextlib.contextmanager
def _stop_on_signals(log: EventLogger) -> Iterator[tuple[asyncio.Event, dict[str, str]]]:
    """SIGINT / SIGTERM set the event (and name the signal) while the block runs."""
    stop = asyncio.Event()
    received: dict[str, str] = {"signal": "none"}
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        received["signal"] = sig.name
        log.info("PROCESS:SIGNAL", signal=sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield stop, received
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _serve(
    settings: Settings,
    logs: LogSystem,
    log: EventLogger,
    build: Callable[[Services], tuple[list[ConsumerSpec], Callable[[], Awaitable[None]] | None]],
    metrics: Metrics | None,
    database: Database | None,
) -> str:
    with _stop_on_signals(log) as (stop, received):
        async with open_services(settings, logs, metrics=metrics, database=database) as services:
            await rebuild_if_needed(services.state, services.database, settings.seed_file, log)
            specs, close = build(services)
            try:
                await run_consumers(services, specs, stop)
            finally:
                if close is not None:
                    await close()
    return received["signal"]


def _settings(ctx: typer.Context, instance: int | None) -> Settings:
    settings = settings_from(ctx)
    if instance is None:
        return settings
    return settings.model_copy(update={"instance": instance})


_INSTANCE = typer.Option(
    None, "--instance", "-i", min=1, help="Instance number (default: settings)."
)


@run_app.command("dispatcher")
def run_dispatcher(ctx: typer.Context, instance: int | None = _INSTANCE) -> None:
    """Route LP reports from the reports queue to the worker queues."""
    # each component's modules load only in its own process (docs/benchmarks.md, "Memory")
    from execflow.pipeline.dispatcher import dispatcher_consumer
    from execflow.pipeline.queue_sampler import QueueSampler, sampled_queues
    from execflow.pipeline.stuck import StuckWatch

    def build(services: Services) -> tuple[list[ConsumerSpec], Callable[[], Awaitable[None]]]:
        # The dispatcher also counts stuck orders for the metric: one per deployment,
        # and the process whose job is noticing what the LP says (and does not say).
        watch = StuckWatch(
            services.state,
            services.logger("dispatcher"),
            services.clock,
            after_s=services.settings.stuck_after_s,
            interval_s=services.settings.stuck_check_interval_s,
            metrics=services.metrics,
        )
        watch.start()
        if services.metrics is None:
            return [dispatcher_consumer(services)], watch.stop
        # ... and samples the broker's queues: one sampler per deployment is enough
        sampler = QueueSampler(
            services.bus,
            services.metrics,
            services.logger("dispatcher"),
            sampled_queues(services.bus, list(services.settings.lps)),
            interval_s=services.settings.queue_sample_interval_s,
        )
        sampler.start()

        async def stop() -> None:
            await sampler.stop()
            await watch.stop()

        return [dispatcher_consumer(services)], stop

    serve(_settings(ctx, instance), "dispatcher", build, defer_database=True)


@run_app.command("worker")
def run_worker(
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., help="open | close | pending | cancel | reject | stoploss | takeprofit"
    ),
    instance: int | None = _INSTANCE,
) -> None:
    """Apply reports of one worker queue (any number of instances may share it)."""
    try:
        worker = Worker(name)
    except ValueError:
        names = ", ".join(w.value for w in Worker)
        raise typer.BadParameter(f"unknown worker {name!r}; one of {names}") from None
    from execflow.pipeline.workers import worker_consumer  # loaded in a worker's process only

    def build(services: Services) -> tuple[list[ConsumerSpec], None]:
        return [worker_consumer(services, worker)], None

    serve(_settings(ctx, instance), f"worker_{worker.value}", build, defer_database=True)


@run_app.command("lp-gateway")
def run_lp_gateway(
    ctx: typer.Context,
    lp: str = typer.Option(..., "--lp", help="LP name: a key of the `lps` settings."),
    instance: int | None = _INSTANCE,
) -> None:
    """One LP's FIX 4.4 session: provider requests out, reports and quotes in."""
    settings = _settings(ctx, instance)
    session = settings.lps.get(lp)
    if session is None:
        known = ", ".join(sorted(settings.lps)) or "none configured"
        raise typer.BadParameter(f"unknown LP {lp!r} (lps: {known})", param_hint="--lp")
    with ExitStack() as stack:
        logs = stack.enter_context(process_logging(settings, "lp_gateway", qualifier=lp))
        log = logs.logger("lp_gateway")
        metrics = _process_metrics(settings, "lp_gateway", stack)
        log.info("PROCESS:START", component="lp_gateway", lp=lp, **masked_settings(settings))
        stopped_by = asyncio.run(_serve_gateway(settings, logs, log, lp, metrics))
        log.info("PROCESS:STOP", component="lp_gateway", lp=lp, signal=stopped_by)


async def _serve_gateway(
    settings: Settings, logs: LogSystem, log: EventLogger, lp: str, metrics: Metrics | None
) -> str:
    from execflow.gateway.service import LpGateway  # the FIX engine loads only here

    with _stop_on_signals(log) as (stop, received):
        async with open_services(settings, logs, metrics=metrics) as services:
            gateway = LpGateway(services, lp, settings.lps[lp])
            await gateway.start()
            try:
                await _first(stop.wait(), gateway.store_lost.wait())
            finally:
                await gateway.stop(settings.shutdown_timeout_s)
    if gateway.store_lost.is_set():
        raise ConfigError(
            f"LP {lp}: its store directory {settings.lps[lp].store_dir / lp} went away "
            "while the session ran (LPGW:STORE_LOST)",
            setting=f"lps.{lp}.store_dir",
        )
    return received["signal"]


async def _first(*waits: Coroutine[Any, Any, object]) -> None:
    """Return once any of ``waits`` has; cancel the others."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


@run_app.command("db-writer")
def run_db_writer(ctx: typer.Context, instance: int | None = _INSTANCE) -> None:
    """Persist order events and snapshots from db_updates, in batches."""
    from execflow.pipeline.dbwriter import DbWriter, db_writer_spec  # in its process only

    def build(services: Services) -> tuple[list[ConsumerSpec], Callable[[], Awaitable[None]]]:
        writer = DbWriter(services)
        return [db_writer_spec(services, writer)], writer.close

    serve(_settings(ctx, instance), "db_writer", build)
