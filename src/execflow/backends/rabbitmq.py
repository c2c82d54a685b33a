"""RabbitMQ bus (aio-pika): durable queues, persistent messages, publisher confirms.

* One robust connection (aio-pika's, to the first answering host of a URL that may list
  several: ``rabbitmq_failover``); aio-pika reopens channels, re-declares the queues and
  resumes consumers after the connection is lost, on the next host when its own is gone.
  A publish interrupted by a lost connection, or nacked by a quorum queue electing a
  leader, is retried once the connection is back (until ``publish_timeout_s``), so a
  publish that returned is durable; a retried publish may duplicate a message
  (at-least-once). A channel whose publishes to a queue stay nacked is replaced by a new
  one, the old one left open (``_replace_channel``; why RabbitMQ 3.10 does it: ``rabbitmq_nacks``).
* One confirmed channel for publishing; one channel per consumer, with its own
  ``basic_qos`` prefetch, so stopping a consumer (closing its channel) returns exactly
  its unacked messages to the queue.
* Queues are quorum queues (replicated; the default) or classic ones
  (``queue_type``); their arguments, the same on every declaration, are in
  ``rabbitmq_queues``. A queue the broker already holds with another type or other
  arguments is a ``ConfigError`` naming the queue, its type and what to do.
* Delayed retry uses per-delay TTL queues ``{queue}.delay.{ms}`` that dead-letter back
  to ``{queue}`` through the default exchange. Delays are rounded up to one of
  ``DELAY_BUCKETS_MS`` so the number of queues stays bounded.
* A consumer's acks are held for ``ack_delay_s`` and sent as one ``basic.ack multiple``
  per run of settled deliveries (``rabbitmq_acks``); nacks go out at once; a stopping
  consumer sends what it holds before it closes its channel.
* The DLQ is a durable queue of the same type; ``Delivery.dead_letter`` publishes into
  it (confirmed) with ``x-*`` headers, then acks. A message the broker dead-lettered
  itself (a quorum queue's delivery limit) is read with ``x-reason: broker_<reason>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from execflow.backends.bus import (
    H_ATTEMPT,
    H_MESSAGE_ID,
    Delivery,
    DeliveryHandler,
    OutgoingMessage,
    QueueNames,
)
from execflow.backends.rabbitmq_acks import ChannelAcks
from execflow.backends.rabbitmq_delivery import RabbitDelivery
from execflow.backends.rabbitmq_failover import connect_failover
from execflow.backends.rabbitmq_nacks import NackStreaks
from execflow.backends.rabbitmq_queues import (
    DEFAULT_DELIVERY_LIMIT,
    DELAY_BUCKETS_MS,
    QueueArguments,
    QueueType,
    declaration_refused,
    delay_bucket_ms,
    delay_queue_name,
)
from execflow.clock import Clock, IdGenerator, SystemClock, UuidIds
from execflow.errors import BusError
from execflow.logs.masking import mask_url

__all__ = ["DELAY_BUCKETS_MS", "RabbitMQBus", "delay_bucket_ms"]

log = logging.getLogger("execflow.backends.rabbitmq")

# Channels one bus may leave open behind it; past that it retries on the one it has.
_MAX_REPLACED_CHANNELS = 32
_PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


# Errors after which a publish is retried on the restored connection.
_RETRYABLE = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    asyncio.TimeoutError,
)


class _Backoff:
    """The pause between two attempts at a broker operation: 0.1 s, doubling, at most 2 s."""

    __slots__ = ("delay_s",)

    def __init__(self) -> None:
        self.delay_s = 0.1

    async def sleep(self) -> None:
        await asyncio.sleep(self.delay_s)
        self.delay_s = min(self.delay_s * 2, 2.0)


def _retryable(error: BaseException) -> bool:
    """A lost connection or channel, or the broker's ``basic.nack``: a quorum queue nacks
    while it has no leader (the node holding it just died; the others are electing one,
    which the fault suite saw take seconds). An unroutable message (``basic.return``) is
    not retried: its queue is gone."""
    return isinstance(error, _RETRYABLE) or _nacked(error)


def _nacked(error: object) -> bool:
    """The broker's ``basic.nack`` (not an unroutable message's ``basic.return``)."""
    return isinstance(error, aiormq.exceptions.DeliveryError) and isinstance(
        error.frame, aiormq.spec.Basic.Nack
    )


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """A message to publish: its body and its AMQP properties, built once (a retry sends the
    same). Not an ``aio_pika.Message``: its constructor, its checked attributes and its
    properties rebuilt on every publish cost a worker ~3 % of its CPU, and
    ``Exchange.publish`` hands aiormq only the body and those properties."""

    body: bytes
    properties: aiormq.spec.Basic.Properties

    @property
    def message_id(self) -> str:
        return str(self.properties.message_id)


async def _publish_one(channel: AbstractRobustChannel, queue: str, message: _Outgoing) -> object:
    """``basic.publish`` to ``queue`` through the default exchange, mandatory, as aio-pika's
    ``Exchange.publish`` does it: the confirm frame, or an exception (nack, return, loss)."""
    if channel.is_closed:
        raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
    underlay = await channel.get_underlay_channel()
    return await underlay.basic_publish(
        message.body, exchange="", routing_key=queue, properties=message.properties, mandatory=True
    )


async def _publish_each(
    channel: AbstractRobustChannel, queue: str, messages: Sequence[_Outgoing]
) -> list[object]:
    """Each message's publish result or its exception, in order. One message (the usual
    publish) is awaited inline: ``asyncio.gather`` would wrap it in a task of its own."""
    if len(messages) == 1:
        try:
            return [await _publish_one(channel, queue, messages[0])]
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is None or current.cancelling():
                raise  # this task is cancelled (the publish timeout, a stop): not a result
            return [exc]  # the publish's own future was cancelled (its channel closed)
        except Exception as exc:  # noqa: BLE001 - returned as gather(return_exceptions) does
            return [exc]
    return await asyncio.gather(
        *(_publish_one(channel, queue, m) for m in messages), return_exceptions=True
    )


class _RabbitConsumer:
    """One consumer on its own channel; closing the channel requeues its unacked messages."""

    def __init__(
        self,
        bus: RabbitMQBus,
        queue_name: str,
        handler: DeliveryHandler,
        channel: AbstractRobustChannel,
        prefetch: int,
    ) -> None:
        self._bus = bus
        self.queue_name = queue_name
        self._handler = handler
        self._channel = channel
        self._prefetch = prefetch
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._acks: ChannelAcks | None = None
        self.stopped = False

    async def start(self) -> None:
        self._queue = await self._channel.declare_queue(
            self.queue_name, durable=True, arguments=self._bus.queue_arguments(self.queue_name)
        )
        self._tag = await self._queue.consume(self._on_message)

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        delivery = RabbitDelivery(self._bus, self.queue_name, incoming, self._acks_of(incoming))
        try:
            await self._handler(delivery)
            if delivery.settled:
                return
            log.error(
                "handler returned without settling the delivery; requeued",
                extra={"queue": self.queue_name, "message_id": delivery.message.message_id},
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.error(
                "handler raised; message returned to its queue",
                extra={"queue": self.queue_name, "message_id": delivery.message.message_id},
                exc_info=True,
            )
        finally:
            if task is not None:
                self._tasks.discard(task)
        # Pause before the redelivery so a crashing handler does not spin.
        await asyncio.sleep(self._bus.crash_requeue_delay_s)
        if not delivery.settled:
            try:
                await delivery.nack(requeue=True)
            except BusError:
                log.warning(
                    "requeue failed; the broker redelivers on channel close",
                    extra={"queue": self.queue_name},
                )

    def _acks_of(self, incoming: AbstractIncomingMessage) -> ChannelAcks | None:
        """The held acks of the channel ``incoming`` came on (new after a reconnect: the old
        channel's deliveries went back to the queue, and its tags mean nothing here)."""
        delay_s = self._bus.ack_delay_s
        if delay_s <= 0 or self._channel.is_closed:
            return None
        try:
            channel = incoming.channel
        except aiormq.exceptions.ChannelInvalidStateError:
            return None  # closed under us: its ack fails and the broker redelivers it
        if self._acks is None or self._acks.channel is not channel:
            if self._acks is not None:
                self._acks.drop()
            self._acks = ChannelAcks(channel, delay_s, self._bus.ack_batch(self._prefetch))
        return self._acks

    async def _flush_acks(self) -> None:
        if self._acks is None or self._channel.is_closed:
            return
        try:
            await self._acks.flush()
        except Exception:
            log.warning(
                "held acks not sent; the broker redelivers those messages",
                extra={"queue": self.queue_name},
                exc_info=True,
            )

    async def stop(self, drain_timeout_s: float = 0.0) -> None:
        """Cancel the subscription, drain, then close the channel (unacked → requeued)."""
        if self.stopped:
            return
        self.stopped = True
        self._bus._consumers.discard(self)
        if self._queue is not None and self._tag is not None and not self._channel.is_closed:
            try:
                await self._queue.cancel(self._tag)
            except Exception:
                log.warning("basic.cancel failed", extra={"queue": self.queue_name}, exc_info=True)
        if self._tasks and drain_timeout_s > 0:
            await asyncio.wait(set(self._tasks), timeout=drain_timeout_s)
        pending = [t for t in self._tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self._flush_acks()
        if not self._channel.is_closed:
            await self._channel.close()


class RabbitMQBus:
    """The ``Bus`` port on RabbitMQ."""

    def __init__(
        self,
        url: str,
        names: QueueNames | None = None,
        prefetch: int = 64,
        heartbeat_s: int = 10,
        ack_delay_s: float = 0.005,
        connection_name: str = "execflow",
        publish_timeout_s: float = 30.0,
        reconnect_interval_s: float = 1.0,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        crash_requeue_delay_s: float = 1.0,
        queue_type: QueueType = "quorum",
        delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
        connect_timeout_s: float = 10.0,
        nack_replace_after_s: float = 2.0,
    ) -> None:
        self._url = url
        self._names = names or QueueNames()
        self.default_prefetch = prefetch
        self.ack_delay_s = ack_delay_s
        self._heartbeat_s = heartbeat_s
        self.connection_name = connection_name
        self._publish_timeout_s = publish_timeout_s
        self._reconnect_interval_s = reconnect_interval_s
        self._connect_timeout_s = connect_timeout_s
        self.clock: Clock = clock or SystemClock()
        self._ids: IdGenerator = ids or UuidIds()
        self.crash_requeue_delay_s = crash_requeue_delay_s
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._arguments = QueueArguments(queue_type, self._names.dlq, delivery_limit)
        self._declared: dict[str, dict[str, Any]] = {}
        self._declare_lock = asyncio.Lock()
        self._consumers: set[_RabbitConsumer] = set()
        self._nacks = NackStreaks(nack_replace_after_s)
        self._channel_lock = asyncio.Lock()
        self._replaced_channels = 0

    # -- Bus port -----------------------------------------------------------------------

    @property
    def queues(self) -> QueueNames:
        """The queue names of this bus."""
        return self._names

    @property
    def dlq_name(self) -> str:
        """The dead-letter queue."""
        return self._names.dlq

    @property
    def declared_queues(self) -> frozenset[str]:
        """Every queue this bus declared (delay queues included)."""
        return frozenset(self._declared)

    async def connect(self) -> None:
        """Open the robust connection and the confirmed publishing channel; declare the DLQ."""
        if self._connection is not None:
            return
        log.info(
            "connecting to RabbitMQ",
            extra={"url": mask_url(self._url), "connection_name": self.connection_name},
        )
        try:
            self._connection = await connect_failover(
                self._url,
                timeout_s=self._connect_timeout_s,
                heartbeat=self._heartbeat_s,
                reconnect_interval=self._reconnect_interval_s,
                client_properties={"connection_name": self.connection_name},
            )
            self._channel = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
        except Exception as exc:
            self._connection = None
            raise BusError(
                "cannot connect to RabbitMQ", url=mask_url(self._url), error=repr(exc)
            ) from exc
        await self.declare(self.dlq_name)

    async def close(self) -> None:
        """Stop consumers (their unacked messages are requeued), then close the connection."""
        for consumer in list(self._consumers):
            await consumer.stop()
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
        self._channel = None
        self._declared.clear()

    async def declare(self, queue: str) -> None:
        """Declare a durable queue of the bus's type (remembered, with its arguments)."""
        await self._declare(queue, self._arguments.for_queue(queue))

    def queue_arguments(self, queue: str) -> dict[str, Any]:
        """The arguments ``queue`` is declared with (every declaration must repeat them)."""
        return self._declared.get(queue) or self._arguments.for_queue(queue)

    async def publish(
        self,
        queue: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        message_id: str | None = None,
    ) -> str:
        """Publish persistently; return once the broker confirmed it."""
        message = self._build(body, headers, message_id)
        await self.declare(queue)
        await self._confirmed(queue, [message])
        return message.message_id

    async def publish_batch(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Publish several messages and wait for all their confirms."""
        built = [self._build(m.body, m.headers, m.message_id) for m in messages]
        await self.declare(queue)
        await self._confirmed(queue, built)
        return [m.message_id for m in built]

    @staticmethod
    def ack_batch(prefetch: int) -> int:
        """Acks a consumer holds at most before it sends them: a quarter of its prefetch, so
        held acks never stop the broker delivering (it stops at ``prefetch`` unacked)."""
        return max(1, prefetch // 4)

    async def consume(
        self, queue: str, handler: DeliveryHandler, prefetch: int | None = None
    ) -> _RabbitConsumer:
        """Start a consumer on its own channel with ``basic_qos(prefetch)``."""
        connection = self._require_connection()
        limit = prefetch if prefetch is not None else self.default_prefetch
        if limit < 1:
            raise ValueError("prefetch must be >= 1")
        await self.declare(queue)
        # A quorum queue answers queue.declare before its Raft member runs; a basic.consume
        # in that window crashes the channel on the broker ({error, noproc}: an
        # INTERNAL_ERROR that closes the connection, rabbitmq-server#13625) and comes back
        # once the queue is up. So a consumer that fails to start is started again, on a
        # new channel, with a backoff, until the publish timeout: only then is it an error.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._publish_timeout_s
        backoff = _Backoff()
        while True:
            try:
                async with asyncio.timeout(max(deadline - loop.time(), backoff.delay_s)):
                    consumer = await self._start_consumer(connection, queue, handler, limit)
            except (BusError, TimeoutError) as exc:
                if loop.time() + backoff.delay_s >= deadline:
                    raise BusError("consumer did not start in time", queue=queue) from exc
                log.warning(
                    "consumer did not start; starting it again",
                    extra={"queue": queue, "retry_in_s": backoff.delay_s},
                    exc_info=True,
                )
                await backoff.sleep()
                continue
            self._consumers.add(consumer)
            return consumer

    async def _start_consumer(
        self,
        connection: AbstractRobustConnection,
        queue: str,
        handler: DeliveryHandler,
        limit: int,
    ) -> _RabbitConsumer:
        """One attempt: a channel with ``basic_qos(limit)``, then ``basic.consume`` on it
        (the channel closed again when the consume fails)."""
        try:
            channel = await connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=limit)
        except Exception as exc:
            raise BusError("cannot open a consumer channel", queue=queue) from exc
        consumer = _RabbitConsumer(self, queue, handler, channel, limit)
        try:
            await consumer.start()
        except BaseException as exc:  # a timeout's cancellation too: no channel left open
            if not channel.is_closed:
                with contextlib.suppress(Exception):
                    await asyncio.shield(channel.close())
            if isinstance(exc, Exception):
                raise BusError("basic.consume failed", queue=queue) from exc
            raise
        return consumer

    async def get(self, queue: str) -> Delivery | None:
        """``basic.get`` with manual ack on the publishing channel."""
        channel = self._require_channel()
        await self.declare(queue)
        try:
            q = await channel.declare_queue(
                queue, durable=True, robust=False, arguments=self.queue_arguments(queue)
            )
            incoming = await q.get(no_ack=False, fail=False)
        except Exception as exc:
            raise BusError("basic.get failed", queue=queue) from exc
        return None if incoming is None else RabbitDelivery(self, queue, incoming)

    async def queue_depth(self, queue: str) -> int:
        """Ready messages, as the broker counts them."""
        count, _ = await self.queue_counts(queue)
        return count

    async def consumer_count(self, queue: str) -> int:
        """Consumers attached, as the broker counts them."""
        _, consumers = await self.queue_counts(queue)
        return consumers

    # -- internals ------------------------------------------------------------------------

    def _require_connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise BusError("bus is not connected; call connect() first")
        return self._connection

    def _require_channel(self) -> AbstractRobustChannel:
        if self._channel is None:
            raise BusError("bus is not connected; call connect() first")
        return self._channel

    def _build(
        self, body: bytes, headers: Mapping[str, str] | None, message_id: str | None
    ) -> _Outgoing:
        merged: dict[str, Any] = dict(headers or {})
        mid = message_id or merged.get(H_MESSAGE_ID) or self._ids.new_id()
        merged[H_MESSAGE_ID] = mid
        merged.setdefault(H_ATTEMPT, "1")
        properties = aiormq.spec.Basic.Properties(
            delivery_mode=_PERSISTENT, headers=merged, message_id=mid, priority=0
        )
        return _Outgoing(bytes(body), properties)

    async def _confirmed(self, queue: str, messages: Sequence[_Outgoing]) -> None:
        """Publish and wait for every confirm; retry what a lost connection interrupted or
        the broker nacked until the deadline (on a new channel: ``_after_nacks``)."""
        todo = list(messages)
        backoff = _Backoff()
        try:
            async with asyncio.timeout(self._publish_timeout_s):
                while todo:
                    channel = self._require_channel()
                    results = await _publish_each(channel, queue, todo)
                    failed = []
                    for message, result in zip(todo, results, strict=True):
                        if not isinstance(result, BaseException):
                            continue
                        if not _retryable(result):
                            raise BusError(
                                "publish refused by the broker", queue=queue, error=repr(result)
                            ) from result
                        failed.append(message)
                    replaced = await self._after_nacks(queue, channel, results)
                    if failed:
                        log.warning(
                            "publish interrupted or nacked; retrying",
                            extra={"queue": queue, "messages": len(failed)},
                        )
                    if failed and not replaced:
                        await backoff.sleep()
                    todo = failed
        except TimeoutError as exc:
            raise BusError(
                "publish not confirmed in time",
                queue=queue,
                timeout_s=self._publish_timeout_s,
                unconfirmed=len(todo),
            ) from exc

    async def _after_nacks(
        self, queue: str, channel: AbstractRobustChannel, results: Sequence[object]
    ) -> bool:
        """Follow the nack streak of ``queue`` on ``channel``; replace the channel once the
        streak has lasted ``nack_replace_after_s`` (``rabbitmq_nacks``). True: replaced
        (retry at once)."""
        if any(not isinstance(r, BaseException) for r in results):
            self._nacks.confirmed(queue, channel)
        if not any(_nacked(r) for r in results if isinstance(r, BaseException)):
            return False
        if self._nacks.nacked(queue, channel, self.clock.monotonic()):
            return await self._replace_channel(queue, channel)
        return False

    async def _replace_channel(self, queue: str, nacked: AbstractRobustChannel) -> bool:
        """A new publishing channel in place of ``nacked`` (once, whoever asks first), on
        a connection that is up. The nacked one is left open, idle: closing it could meet
        aio-pika restoring it, which fails the reconnection (a stressed run hung so:
        docs/faults.md). Its publishes in flight end there; a nacked one is retried."""
        async with self._channel_lock:
            connection = self._connection
            if self._channel is not nacked or connection is None:
                return self._channel is not nacked  # another publish replaced it
            if connection.is_closed or not connection.connected.is_set():
                return False  # reconnecting: aio-pika reopens it, a new one on the broker
            if self._replaced_channels >= _MAX_REPLACED_CHANNELS:
                return False
            try:
                channel = await asyncio.wait_for(
                    connection.channel(publisher_confirms=True, on_return_raises=True),
                    self._connect_timeout_s,
                )
            except Exception:
                log.warning(
                    "cannot open a publishing channel; retrying on the nacked one",
                    extra={"queue": queue},
                    exc_info=True,
                )
                return False
            self._channel = channel
            self._replaced_channels += 1
        log.warning(
            "publishing channel replaced: its publishes stayed nacked",
            extra={"queue": queue, "replaced_channels": self._replaced_channels},
        )
        return True

    async def _declare(self, queue: str, arguments: dict[str, Any]) -> None:
        if queue in self._declared:
            return
        channel = self._require_channel()
        async with self._declare_lock:
            if queue in self._declared:
                return
            try:
                await channel.declare_queue(queue, durable=True, arguments=arguments)
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                raise declaration_refused(queue, self._arguments.queue_type, str(exc)) from exc
            except Exception as exc:
                raise BusError("queue declaration failed", queue=queue, error=repr(exc)) from exc
            self._declared[queue] = arguments

    async def declare_delay_queue(self, queue: str, delay_s: float) -> str:
        """The delay queue of ``queue`` for ``delay_s`` (rounded up to a bucket), declared."""
        bucket = delay_bucket_ms(delay_s)
        name = delay_queue_name(queue, bucket)
        await self._declare(name, self._arguments.for_delay(queue, bucket))
        return name

    async def queue_counts(self, queue: str) -> tuple[int, int]:
        """Ready messages and consumers, from one passive-style declare."""
        channel = self._require_channel()
        await self.declare(queue)
        try:
            declared = await channel.declare_queue(
                queue, durable=True, robust=False, arguments=self.queue_arguments(queue)
            )
        except asyncio.CancelledError as exc:
            # aiormq cancels the calls in flight when the connection dies: an outage like
            # any other (the scenario driver's backlog check died of it), unless this
            # task itself is being cancelled
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise BusError("queue inspection failed: connection lost", queue=queue) from exc
        except Exception as exc:
            raise BusError("queue inspection failed", queue=queue) from exc
        result = declared.declaration_result
        return int(result.message_count or 0), int(result.consumer_count or 0)
