"""The API under uvicorn inside our own event loop, beside the pipeline when embedded.

``api_context`` builds what the app needs from open services; ``ApiServer`` runs uvicorn
(no access log: every mutating call has its own ``API:CALL`` line in ``api.log``;
uvicorn's own records reach the log files through the stdlib bridge). SIGINT / SIGTERM
are ours, not uvicorn's: uvicorn re-raises a signal it caught once it stopped, which
would kill the process before the pipeline drained and ``PROCESS:STOP`` was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from execflow.api.app import create_app
from execflow.api.context import ApiContext
from execflow.backends.sql import SqlDatabase
from execflow.backends.sql_api import SqlApiStore
from execflow.errors import ConfigError
from execflow.pipeline.intake import OrderIntake
from execflow.pipeline.services import Services

__all__ = ["ApiServer", "api_context", "api_store"]


def api_store(services: Services) -> SqlApiStore:
    """The key and idempotency store, in the pipeline's database."""
    database = services.database
    if not isinstance(database, SqlDatabase):
        raise ConfigError("the API needs the SQL database", setting="database_url")
    return SqlApiStore(database)


def api_context(services: Services, intake: OrderIntake | None = None) -> ApiContext:
    """An ``ApiContext`` on ``services`` (a new intake unless one is given)."""
    return ApiContext.build(services, intake or OrderIntake(services), api_store(services))


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (``ApiServer.serve`` installs ours)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """uvicorn serving ``create_app(context)`` on the configured host and port."""

    def __init__(
        self, context: ApiContext, host: str | None = None, port: int | None = None
    ) -> None:
        settings = context.services.settings
        self.context = context
        self.app: FastAPI = create_app(context)
        config = uvicorn.Config(
            self.app,
            host=host or settings.api_host,
            port=settings.api_port if port is None else port,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            date_header=True,
            # live streams never end by themselves: give them this long, then close them
            timeout_graceful_shutdown=max(1, int(settings.shutdown_timeout_s)),
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0), once started."""
        for server in self._server.servers:
            for sock in server.sockets:
                port: int = sock.getsockname()[1]
                return port
        raise RuntimeError("the API server is not listening")

    async def serve(self) -> str:
        """Serve until SIGINT / SIGTERM (or ``stop``); the name of the signal, or ``none``."""
        loop = asyncio.get_running_loop()
        received = {"signal": "none"}

        def on_signal(sig: signal.Signals) -> None:
            received["signal"] = sig.name
            self.context.log.info("PROCESS:SIGNAL", signal=sig.name)
            self._server.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await self.context.idempotency.prepare()
            await self._server.serve()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self._after()
        return received["signal"]

    async def start(self) -> None:
        """Serve in the background (tests, ``execflow serve``); returns once listening."""
        await self.context.idempotency.prepare()
        self._task = asyncio.create_task(self._server.serve(), name="api-server")
        while not self._server.started:
            if self._task.done():
                await self._task  # a bind error surfaces here
                raise RuntimeError("the API server stopped before it started")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop accepting, finish in-flight calls, then flush the intake's deferred sends."""
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._after()

    async def _after(self) -> None:
        await self.context.idempotency.close()
        await self.context.hub.close()
        await self.context.intake.shutdown(self.context.services.settings.shutdown_timeout_s)
