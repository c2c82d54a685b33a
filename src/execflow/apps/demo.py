"""One demo run: embedded pipeline + LP simulator + scenario, then reconciliation.

Everything lives in a fresh run directory (``logs/provider/`` and ``execflow.db``): the
directory is emptied first, but only when it is missing, empty, or was made by an
earlier demo (it then holds the ``.execflow-demo`` marker).
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from execflow.apps.scenario import Progress, ScenarioConfig, ScenarioDriver, ScenarioResult
from execflow.errors import ConfigError
from execflow.logs.setup import setup_logging
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.intake import OrderIntake
from execflow.pipeline.reconcile import ReconcileReport, reconcile
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import open_services
from execflow.settings import Settings
from execflow.sim.config import LpConfig
from execflow.sim.refdata import demo_seed
from execflow.sim.runtime import Simulator

if TYPE_CHECKING:
    from execflow.sim.viafix import ViaFix

__all__ = ["DEMO_LP", "MARKER", "DemoOptions", "DemoOutcome", "prepare_run_dir", "run_demo"]

MARKER = ".execflow-demo"
DEMO_LP = LpConfig(
    reject_rate=0.03,
    partial_rate=0.1,
    duplicate_rate=0.05,
    reorder_rate=0.05,
    malformed_rate=0.02,
    double_fill_rate=0.05,
)
"""The demo's LP: messy on purpose (5 % duplicates and reorders, 2 % malformed, and now
and then both legs of a position filled, which the pipeline must refuse with an ERROR)."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Size, messiness and place of a demo run."""

    run_dir: Path = Path("execflow-demo")
    accounts: int = 20
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    lp: LpConfig = field(default_factory=lambda: DEMO_LP)
    seed: int = 42
    log_format: str = "text"
    tick_interval_s: float = 0.02
    via_fix: bool = False
    """Put a real FIX 4.4 session (QuickFIX) between the pipeline and the simulated LP."""


@dataclass
class DemoOutcome:
    """Everything the summary prints."""

    run_dir: Path
    log_dir: Path
    database: Path
    scenario: ScenarioResult
    reconciliation: ReconcileReport
    stats: dict[str, dict[str, Any]]
    dlq_reasons: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Clean reconciliation and every order final."""
        return self.reconciliation.ok and self.scenario.settled


def prepare_run_dir(run_dir: Path) -> None:
    """Empty (or create) the run directory; refuse a directory the demo did not make."""
    if run_dir.exists():
        if not run_dir.is_dir():
            raise ConfigError(f"demo directory {run_dir} is a file", setting="dir")
        if any(run_dir.iterdir()) and not (run_dir / MARKER).exists():
            raise ConfigError(
                f"demo directory {run_dir} is not empty and was not made by execflow demo",
                setting="dir",
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / MARKER).write_text("made by execflow demo; emptied at each run\n")


def demo_settings(base: Settings, options: DemoOptions) -> Settings:
    """The base settings with the embedded backends pointed into the run directory."""
    run_dir = options.run_dir
    return base.model_copy(
        update={
            "broker_url": "memory://",
            "state_url": "memory://",
            "database_url": f"sqlite+aiosqlite:///{run_dir / 'execflow.db'}",
            "log_dir": run_dir / "logs" / "provider",
            "log_format": options.log_format,
            "queue_prefix": "execflow",
            "seed_file": None,
        }
    )


async def run_demo(
    base: Settings, options: DemoOptions, progress: Progress | None = None
) -> DemoOutcome:
    """Run the whole demo; the caller renders the outcome."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    run_dir = options.run_dir.resolve()
    options = replace(options, run_dir=run_dir)
    await asyncio.to_thread(prepare_run_dir, run_dir)
    settings = demo_settings(base, options)
    logs = await asyncio.to_thread(setup_logging, settings, "simulator")
    try:
        async with open_services(settings, logs) as services:
            sim: Simulator | ViaFix
            if options.via_fix:
                from execflow.sim.viafix import ViaFix  # loads the FIX engine

                sim = ViaFix(
                    services,
                    options.lp,
                    run_dir / "fix-store",
                    seed=options.seed,
                    tick_interval_s=options.tick_interval_s,
                )
            else:
                sim = Simulator(
                    services.bus,
                    services.state,
                    logs.logger("simulator"),
                    options.lp,
                    seed=options.seed,
                    tick_interval_s=options.tick_interval_s,
                    clock=services.clock,
                    metrics=services.metrics,
                )
            rng = random.Random(options.seed + 2)
            seed = demo_seed(options.accounts, rng, sim.feed)
            await apply_seed(seed, services.state, services.database)
            pipeline = EmbeddedPipeline(services, lp=sim, rebuild=False)
            await pipeline.start()

            async def drain() -> None:
                # bounded by the stall window: a round that times out still looks at the
                # orders, and the driver's watch decides whether they still move
                await pipeline.drain(timeout_s=options.scenario.settle_stall_s)
                await sim.lp.idle()
                await pipeline.drain(timeout_s=options.scenario.settle_stall_s)

            async def backlog() -> int:
                queues = pipeline.consumed_queues()
                return sum([await services.bus.queue_depth(q) for q in queues])

            intake = OrderIntake(services)
            driver = ScenarioDriver(
                intake,
                services.state,
                sim.feed,
                seed,
                options.scenario,
                rng,
                drain,
                progress,
                backlog,
            )
            try:
                result = await driver.run()
                await intake.shutdown()
                await drain()
            finally:
                await pipeline.stop()
            report = await reconcile(services.database, services.state)
            stats = logs.stats_snapshot()
    finally:
        await asyncio.to_thread(logs.close)
    return DemoOutcome(
        run_dir=run_dir,
        log_dir=Path(settings.log_dir),
        database=run_dir / "execflow.db",
        scenario=result,
        reconciliation=report,
        stats=stats,
        dlq_reasons=dlq_reasons(stats),
        elapsed_s=loop.time() - started,
    )


def dlq_reasons(stats: dict[str, dict[str, Any]]) -> Counter[str]:
    """Dead-letter counts by reason, summed over every component."""
    out: Counter[str] = Counter()
    for fields in stats.values():
        for key, value in fields.items():
            if key.startswith("dlq.") and isinstance(value, int):
                out[key[4:]] += value
    return out
