"""``EventFeed`` on RabbitMQ: a fanout exchange ``{prefix}.events``.

Each listener binds its own exclusive, auto-deleted, server-named queue: every API
process gets every announcement, nothing piles up for a process that is gone, and
nothing is persisted (the events themselves are in the database). aio-pika's robust
connection re-declares the queue and its binding after a reconnect; announcements made
while a listener was away are lost, which the streams tolerate (``backends.feed``).

Only listeners declare the exchange, auto-deleted: it exists while some API process
listens and disappears with the last one, so a deployment without an API (or a test
run) leaves nothing behind on the broker. The announcer (the db writer) only checks
that it exists (a passive declare, again at most once a second while it does not) and
announces to nobody otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import aio_pika
import aio_pika.exceptions
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from execflow.backends.feed import FeedHandler, Listening, decode_hint, encode_hint
from execflow.backends.rabbitmq_failover import connect_failover
from execflow.errors import BusError
from execflow.logs.masking import mask_url

__all__ = ["RabbitMQFeed"]

log = logging.getLogger("execflow.backends.rabbitmq_feed")

_ANNOUNCE_TIMEOUT_S = 2.0
_ABSENT_RECHECK_S = 1.0


class _RabbitListener:
    def __init__(self, queue: AbstractQueue, channel: AbstractRobustChannel, tag: str) -> None:
        self._queue = queue
        self._channel = channel
        self._tag = tag

    async def stop(self) -> None:
        if self._channel.is_closed:
            return
        try:
            await self._queue.cancel(self._tag)
        finally:
            await self._channel.close()


class RabbitMQFeed:
    """Announcements through a fanout exchange; one channel per listener."""

    def __init__(self, url: str, prefix: str, heartbeat_s: int = 10) -> None:
        self._url = url
        self.exchange_name = f"{prefix}.events"
        self._heartbeat_s = heartbeat_s
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._listeners: list[_RabbitListener] = []
        self._opening = asyncio.Lock()
        self._absent_until = 0.0

    async def connect(self) -> None:
        """Nothing yet: the connection opens on first use (most processes never use it)."""

    async def _open(self) -> AbstractRobustConnection:
        async with self._opening:
            if self._connection is None:
                await self._connect()
        assert self._connection is not None
        return self._connection

    async def _connect(self) -> None:
        try:
            self._connection = await connect_failover(
                self._url,
                timeout_s=10.0,
                heartbeat=self._heartbeat_s,
                client_properties={"connection_name": "execflow-feed"},
            )
        except Exception as exc:
            self._connection = None
            raise BusError(
                "cannot open the event feed", url=mask_url(self._url), error=repr(exc)
            ) from exc

    async def close(self) -> None:
        """Stop the listeners and close the connection."""
        for listener in self._listeners:
            await listener.stop()
        self._listeners.clear()
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._channel = None
        self._exchange = None

    async def announce(self, account_ids: Iterable[str]) -> None:
        """Publish one transient announcement."""
        body = encode_hint(account_ids)
        if body == b"[]":
            return
        try:
            # bounded: a hint is not worth holding up the db writer for
            async with asyncio.timeout(_ANNOUNCE_TIMEOUT_S):
                exchange = await self._existing_exchange()
                if exchange is None:
                    return
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT),
                    routing_key="",
                )
        except Exception as exc:
            self._exchange = None  # gone with its last listener, perhaps: look again
            raise BusError("event feed announce failed", error=repr(exc)) from exc

    async def _existing_exchange(self) -> AbstractExchange | None:
        """The exchange if some listener declared it (checked at most once a second)."""
        if self._exchange is not None and self._channel is not None:
            if not self._channel.is_closed:
                return self._exchange
            self._exchange = None
        now = time.monotonic()
        if now < self._absent_until:
            return None
        connection = await self._open()
        # a passive declare of a missing exchange closes its channel: a channel of its own
        channel = await connection.channel(publisher_confirms=False)
        try:
            exchange = await channel.declare_exchange(self.exchange_name, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            self._absent_until = now + _ABSENT_RECHECK_S
            return None
        self._channel, self._exchange = channel, exchange
        return exchange

    async def listen(self, handler: FeedHandler) -> Listening:
        """Bind an exclusive queue to the exchange and consume it (no acks: hints only)."""
        connection = await self._open()

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            accounts = decode_hint(incoming.body)
            if accounts is None:
                log.warning("event feed: not an announcement", extra={"bytes": len(incoming.body)})
                return
            try:
                await handler(accounts)
            except Exception:
                log.error("event feed listener failed", exc_info=True)

        try:
            channel = await connection.channel(publisher_confirms=False)
            exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.FANOUT, auto_delete=True
            )
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await queue.bind(exchange)
            tag = await queue.consume(on_message, no_ack=True)
        except Exception as exc:
            raise BusError("cannot listen to the event feed", error=repr(exc)) from exc
        listener = _RabbitListener(queue, channel, tag)
        self._listeners.append(listener)
        self._absent_until = 0.0  # it exists now: this process's announcements see it at once
        return listener
