"""A live API in a thread of its own: pipeline, LP simulator and uvicorn on a free port.

For tests that drive the API from synchronous code (schemathesis, the README session):
the server's event loop, services and database all live in the thread.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

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

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


@dataclass
class Live:
    """Where the live API listens, and a token with every scope on every account."""

    base: str
    token: str
    settings: Settings

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Serve(Protocol[T_contra]):
    """What a thread's ``main`` awaits once it is up: hands out its value until the block ends."""

    async def __call__(self, value: T_contra) -> None: ...


@contextmanager
def served_in_a_thread(
    name: str, main: Callable[[Serve[T]], Coroutine[Any, Any, None]], start_timeout_s: float = 60.0
) -> Iterator[T]:
    """Run ``main`` on an event loop of its own in a daemon thread; yield what it serves.

    ``main`` starts its servers, then ``await serve(value)``: that hands ``value`` to the
    ``with`` block and returns when the block ends, so ``main`` stops its servers after it
    (in a ``finally``). A ``main`` that fails before serving fails the ``with`` statement.
    """
    started = threading.Event()
    stop = threading.Event()
    found: dict[str, object] = {}

    async def serve(value: T) -> None:
        found["value"] = value
        started.set()
        await asyncio.to_thread(stop.wait)

    def run() -> None:
        try:
            asyncio.run(main(serve))
        except BaseException as exc:
            found["error"] = exc
            started.set()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    assert started.wait(start_timeout_s), f"{name} did not start"
    error = found.get("error")
    if isinstance(error, BaseException):
        raise RuntimeError(f"{name} failed to start") from error
    try:
        yield cast(T, found["value"])
    finally:
        stop.set()
        thread.join(30)


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

    async def main(serve: Serve[Live]) -> None:
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
                try:
                    await serve(Live(f"http://127.0.0.1:{server.port}", minted.token, settings))
                finally:
                    await server.stop()
                    await pipeline.stop()

    with served_in_a_thread("live-api", main) as live:
        yield live
