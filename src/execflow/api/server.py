"""The API under uvicorn inside our own event loop, beside the pipeline when embedded.

``api_context`` builds what the app needs from open services; ``ApiServer`` runs uvicorn
(no access log: every mutating call has its own ``API:CALL`` line in ``api.log``;
uvicorn's own records reach the log files through the stdlib bridge). uvicorn catches
SIGINT / SIGTERM while it serves and returns; ``serve`` then shuts the intake down so a
deferred send still goes out.
"""

from __future__ import annotations

import asyncio
import contextlib

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
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0), once started."""
        for server in self._server.servers:
            for sock in server.sockets:
                port: int = sock.getsockname()[1]
                return port
        raise RuntimeError("the API server is not listening")

    async def serve(self) -> None:
        """Serve until SIGINT / SIGTERM (or ``stop``)."""
        try:
            await self._server.serve()
        finally:
            await self.context.intake.shutdown(self.context.services.settings.shutdown_timeout_s)

    async def start(self) -> None:
        """Serve in the background (tests, ``execflow serve``); returns once listening."""
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
        await self.context.intake.shutdown(self.context.services.settings.shutdown_timeout_s)
