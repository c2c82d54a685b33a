"""A live API in a thread of its own: pipeline, LP simulator and uvicorn on a free port.

For tests that drive the API from synchronous code (schemathesis, the README session):
the server's event loop, services and database all live in the thread.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from execflow.api.keys import Scope, mint_key
from execflow.api.server import ApiServer, api_context
from execflow.logs.setup import setup_logging
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import open_services
from execflow.settings import Settings
from execflow.sim.refdata import demo_seed
from execflow.sim.runtime import Simulator
from tests.sim.conftest import quiet_config


@dataclass
class Live:
    """Where the live API listens, and a token with every scope on every account."""

    base: str
    token: str
    settings: Settings

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextmanager
def live_api(directory: Path, **overrides: object) -> Iterator[Live]:
    """Start the embedded deployment with its API; stop it when the block ends."""
    settings = Settings(
        log_dir=directory / "logs",
        database_url=f"sqlite+aiosqlite:///{directory / 'db.sqlite'}",
        api_port=0,
        shutdown_timeout_s=2.0,
        **overrides,  # type: ignore[arg-type]
    )
    started = threading.Event()
    stop = threading.Event()
    found: dict[str, object] = {}

    async def main() -> None:
        with setup_logging(settings, "api", bridge=False) as logs:
            async with open_services(settings, logs) as services:
                sim = Simulator(
                    services.bus, services.state, logs.logger("simulator"), quiet_config(), seed=4
                )
                pipeline = EmbeddedPipeline(services, lp=sim)
                await pipeline.start()
                seed = demo_seed(4, random.Random(3), sim.feed)
                await apply_seed(seed, services.state, services.database)
                context = api_context(services)
                context.readiness.state_rebuilt = True
                minted = mint_key("live", list(Scope), ["*"], services.clock.now())
                await context.store.add_key(minted.record)
                server = ApiServer(context, port=0)
                await server.start()
                found["base"] = f"http://127.0.0.1:{server.port}"
                found["token"] = minted.token
                started.set()
                try:
                    await asyncio.to_thread(stop.wait)
                finally:
                    await server.stop()
                    await pipeline.stop()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            found["error"] = exc
            started.set()

    thread = threading.Thread(target=run, name="live-api", daemon=True)
    thread.start()
    assert started.wait(60), "the live API did not start"
    error = found.get("error")
    if isinstance(error, BaseException):
        raise RuntimeError("the live API failed to start") from error
    try:
        yield Live(str(found["base"]), str(found["token"]), settings)
    finally:
        stop.set()
        thread.join(30)
