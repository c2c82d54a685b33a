"""``execflow simulate``: the LP simulator as its own process, on the configured backends.

::

    execflow simulate                       # play the LP until SIGINT / SIGTERM
    execflow simulate --orders 500          # also drive a scenario, then reconcile and exit

With RabbitMQ (``EXECFLOW_BROKER_URL=amqp://...``) it serves the distributed pipeline
started by ``execflow run all``; exactly one simulator should consume a deployment's
``provider_requests`` queue (the LP's book lives in its memory). Its metrics (the LP
latency) go to ``run all``'s endpoint when it is a child, else to its own
``EXECFLOW_METRICS_PORT`` when set.
"""

from __future__ import annotations

import asyncio
import signal

import typer
from rich.console import Console

from execflow.apps.scenario import ScenarioConfig
from execflow.apps.standalone import SimulateOptions, SimulateOutcome, simulate
from execflow.cli.context import settings_from
from execflow.cli.demo import render_reconciliation
from execflow.cli.failures import process_logging
from execflow.cli.progress import PhaseProgress, phase_progress
from execflow.metrics import Metrics, MetricsServer
from execflow.pipeline.services import open_services
from execflow.safetext import markup
from execflow.settings import Settings
from execflow.sim.config import LpConfig

__all__ = ["simulate_command"]


def simulate_command(
    ctx: typer.Context,
    orders: int = typer.Option(0, min=0, help="Drive a scenario of this many orders (0: LP only)."),
    accounts: int = typer.Option(20, min=1, help="Accounts of the scenario."),
    rate: float = typer.Option(0.0, min=0, help="New orders per second; 0 = as fast as possible."),
    reject_rate: float = typer.Option(0.02, min=0, max=1),
    duplicate_rate: float = typer.Option(0.0, min=0, max=1),
    reorder_rate: float = typer.Option(0.0, min=0, max=1),
    malformed_rate: float = typer.Option(0.0, min=0, max=1),
    partial_rate: float = typer.Option(0.0, min=0, max=1),
    seed: int = typer.Option(42, help="Seed of prices, LP behaviour and the scenario."),
    settle_timeout: float = typer.Option(
        120.0, min=1, help="Closing out: give up after this many seconds in all."
    ),
    settle_stall: float = typer.Option(
        60.0, min=1, help="Closing out: give up after this many seconds with no order ending."
    ),
    fix_port: int | None = typer.Option(
        None,
        "--fix-port",
        min=1,
        max=65535,
        help="Serve the LP as a FIX 4.4 acceptor on 127.0.0.1:PORT (SenderCompID SIMLP, "
        "TargetCompID EXECFLOW) with market data, for `execflow run lp-gateway`.",
    ),
    fix_password: str | None = typer.Option(
        None, "--fix-password", help="Refuse a Logon whose Password (554) differs."
    ),
) -> None:
    """Play the LP (and optionally a scenario) against the configured broker and stores."""
    options = SimulateOptions(
        lp=LpConfig(
            reject_rate=reject_rate,
            partial_rate=partial_rate,
            duplicate_rate=duplicate_rate,
            reorder_rate=reorder_rate,
            malformed_rate=malformed_rate,
        ),
        scenario=ScenarioConfig(
            orders=orders,
            rate_per_s=rate,
            settle_timeout_s=settle_timeout,
            settle_stall_s=settle_stall,
        ),
        accounts=accounts,
        seed=seed,
        fix_port=fix_port,
        fix_password=fix_password,
    )
    settings = settings_from(ctx)
    phases = {"orders": "placing orders", "settle": "closing out"}
    with phase_progress(ctx, phases if orders > 0 else {}) as progress:
        outcome = _run(settings, options, progress)
    if outcome is None:
        return
    console = Console()
    scenario = outcome.scenario
    console.print(
        f"scenario: {scenario.orders_placed} orders placed in {scenario.elapsed_s:.1f} s; "
        f"final {markup(dict(sorted(scenario.final_statuses.items())))}; "
        f"not final {len(scenario.unsettled)}"
    )
    render_reconciliation(console, outcome.reconciliation)
    if not (outcome.reconciliation.ok and scenario.settled):
        raise typer.Exit(1)


def _run(
    settings: Settings, options: SimulateOptions, progress: PhaseProgress | None
) -> SimulateOutcome | None:
    # The LP latency: under `run all` on the supervisor's endpoint, alone on its own
    # EXECFLOW_METRICS_PORT like every `execflow run` process
    metrics = None
    server: MetricsServer | None = None
    if settings.metrics_multiproc_dir is not None:
        metrics = Metrics("simulator", multiprocess_dir=settings.metrics_multiproc_dir)
    elif settings.metrics_port is not None:
        metrics = Metrics("simulator")
        server = MetricsServer(metrics, settings.metrics_host, settings.metrics_port).start()
    try:
        return _simulate_logged(settings, options, progress, metrics)
    finally:
        if server is not None:
            server.stop()


def _simulate_logged(
    settings: Settings,
    options: SimulateOptions,
    progress: PhaseProgress | None,
    metrics: Metrics | None,
) -> SimulateOutcome | None:
    with process_logging(settings, "simulator") as logs:
        log = logs.logger("simulator")

        async def main() -> SimulateOutcome | None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()

            def on_signal(sig: signal.Signals) -> None:
                log.info("PROCESS:SIGNAL", signal=sig.name)
                stop.set()

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, on_signal, sig)
            log.info("PROCESS:START", component="simulator", orders=options.scenario.orders)
            try:
                async with open_services(settings, logs, metrics=metrics) as services:
                    outcome = await simulate(services, options, stop, progress)
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            # a failure is logged as PROCESS:FAILED instead (process_logging)
            log.info("PROCESS:STOP", component="simulator")
            return outcome

        return asyncio.run(main())
