"""The simulator behind a real FIX session: feed + FIX acceptor + the LP gateway.

``ViaFix`` plays the same part as ``Simulator`` for an ``EmbeddedPipeline`` (it is its
LP adapter), but every request and report crosses a FIX 4.4 session on 127.0.0.1, and
quotes reach the state store only as the gateway's market data (the feed itself writes
nowhere). ``execflow demo --via-fix`` and the gateway's end-to-end tests run on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Sequence
from pathlib import Path

from execflow.clock import IdGenerator, UuidIds
from execflow.gateway.service import LpGateway
from execflow.pipeline.services import Services
from execflow.settings import LpSession
from execflow.sim.config import LpConfig
from execflow.sim.feed import DEFAULT_SYMBOLS, SymbolSpec
from execflow.sim.fixlp import FixLpSession, FixSimulator

__all__ = ["ViaFix", "free_port"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ViaFix:
    """Feed + FIX LP acceptor + gateway, started and stopped as one LP adapter."""

    def __init__(
        self,
        services: Services,
        config: LpConfig,
        store_dir: Path,
        *,
        lp_name: str = "sim",
        port: int | None = None,
        seed: int = 1,
        symbols: Sequence[SymbolSpec] = DEFAULT_SYMBOLS,
        tick_interval_s: float = 0.02,
        heartbeat_s: int = 30,
        ids: IdGenerator | None = None,
    ) -> None:
        self.services = services
        self.port = port or free_port()
        self.simulator = FixSimulator(
            services.logger("simulator"),
            config,
            FixLpSession(port=self.port, heartbeat_s=heartbeat_s),
            services.clock,
            ids or UuidIds(),
            seed=seed,
            symbols=symbols,
            tick_interval_s=tick_interval_s,
        )
        self.feed = self.simulator.feed
        self.server = self.simulator.lp
        self.session = LpSession(
            port=self.port,
            sender_comp_id="EXECFLOW",
            target_comp_id="SIMLP",
            heartbeat_s=heartbeat_s,
            store_dir=store_dir,
            symbols=tuple(s.symbol for s in symbols),
        )
        self.gateway = LpGateway(services, lp_name, self.session)

    @property
    def lp(self) -> ViaFix:
        """What the demo waits on (``lp.idle()``), as with ``Simulator.lp``."""
        return self

    async def start(self, logon_timeout_s: float = 20.0) -> None:
        """Listen, connect the gateway, wait for its logon and a quote of every symbol."""
        await self.simulator.start()
        await self.gateway.start()
        async with asyncio.timeout(logon_timeout_s):
            await self.gateway.logged_on.wait()
            await self.gateway.quotes.wait_complete(self.feed.symbols)
            await self.gateway.quotes.flush()

    async def idle(self, timeout_s: float = 10.0) -> None:
        """Wait (bounded) until the LP has sent everything and the gateway handled it all."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                # a request the gateway sent (and acknowledged) may still be on the wire
                sent = self.gateway.log.stats.count("requests_sent")
                while len(self.server.received) < sent:
                    if not self.gateway.logged_on.is_set():
                        break  # it is re-sent after the next logon
                    await asyncio.sleep(0.005)
        await self.server.idle()
        # what is on the wire reaches the gateway (re-sent copies may make it more)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.gateway.reports_seen < self.server.reports_sent:
                    if not self.gateway.logged_on.is_set():
                        return  # the rest comes by resend after the next logon
                    await asyncio.sleep(0.01)
        await self.gateway.idle()

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop the prices, let the LP's last reports through, then log out and close."""
        await self.simulator.stop_feed()
        await self.idle(drain_timeout_s)
        await self.gateway.stop(drain_timeout_s)
        await self.simulator.stop(drain_timeout_s)
