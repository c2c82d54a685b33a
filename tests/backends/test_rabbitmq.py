"""RabbitMQ-only behaviour: process death, confirms, reconnection, delay queues."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest

from execflow.backends.bus import H_ORIGINAL_QUEUE, H_REASON, Delivery, Message, QueueNames
from execflow.backends.rabbitmq import DELAY_BUCKETS_MS, RabbitMQBus, delay_bucket_ms
from execflow.errors import BusError, ConfigError
from tests.backends.conftest import close_connection_by_name, delete_queues, make_rabbit_bus, unique
from tests.services import AMQP_URL, need_service

GUARD_S = 30.0


def test_delay_buckets_round_up_and_are_bounded() -> None:
    assert delay_bucket_ms(0) == 50
    assert delay_bucket_ms(0.05) == 50
    assert delay_bucket_ms(0.051) == 100
    assert delay_bucket_ms(1.5) == 2_000
    assert delay_bucket_ms(10_000) == DELAY_BUCKETS_MS[-1]
    assert len(DELAY_BUCKETS_MS) <= 16


@pytest.fixture
async def rabbit() -> AsyncIterator[RabbitMQBus]:
    need_service("rabbitmq")
    bus = await make_rabbit_bus(QueueNames(unique("eftest.")), prefetch=16)
    try:
        yield bus
    finally:
        declared = set(bus.declared_queues)
        await bus.close()
        await delete_queues(declared)


pytestmark = pytest.mark.integration


def acking_into(seen: asyncio.Queue[Message]) -> Callable[[Delivery], Awaitable[None]]:
    """A handler that acks each delivery, then puts its message on ``seen``."""

    async def handler(delivery: Delivery) -> None:
        await delivery.ack()
        seen.put_nowait(delivery.message)

    return handler


async def test_messages_survive_a_consumer_process_killed_before_ack(rabbit: RabbitMQBus) -> None:
    queue = rabbit.queues.worker("open")
    await rabbit.declare(queue)
    for i in range(5):
        await rabbit.publish(queue, str(i).encode(), message_id=f"k{i}")
    script = Path(__file__).with_name("rabbit_crash_consumer.py")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        AMQP_URL,
        rabbit.queues.prefix,
        queue,
        "5",
        stdout=asyncio.subprocess.PIPE,
        cwd=str(Path(__file__).parents[2]),
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), GUARD_S)
        assert line.strip() == b"held"
        assert await rabbit.queue_depth(queue) == 0  # all five held, unacked, by the process
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    seen: asyncio.Queue[Message] = asyncio.Queue()
    consumer = await rabbit.consume(queue, acking_into(seen))
    again = [await asyncio.wait_for(seen.get(), GUARD_S) for _ in range(5)]
    await consumer.stop()
    assert sorted(m.message_id for m in again) == [f"k{i}" for i in range(5)]
    assert all(m.redelivered for m in again)


async def test_publish_returns_only_when_the_broker_holds_the_message(
    rabbit: RabbitMQBus,
) -> None:
    queue = rabbit.queues.db_updates
    for i in range(50):
        await rabbit.publish(queue, str(i).encode())
    # A second, independent connection sees every confirmed message at once.
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, durable=True, passive=True)
        assert declared.declaration_result.message_count == 50
        first = await declared.get(no_ack=True)
        assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    finally:
        await connection.close()


async def test_publish_to_a_vanished_queue_is_an_error_not_a_silent_drop(
    rabbit: RabbitMQBus,
) -> None:
    queue = rabbit.queues.name("vanishing")
    await rabbit.publish(queue, b"first")
    await delete_queues({queue})
    with pytest.raises(BusError):
        await rabbit.publish(queue, b"lost?")


async def test_retry_later_uses_a_bounded_delay_queue(rabbit: RabbitMQBus) -> None:
    queue = rabbit.queues.worker("close")
    await rabbit.publish(queue, b"x", message_id="dq")
    delivery = await rabbit.get(queue)
    assert delivery is not None
    await delivery.retry_later(0.03)
    assert f"{queue}.delay.50" in rabbit.declared_queues
    seen: asyncio.Queue[Message] = asyncio.Queue()
    consumer = await rabbit.consume(queue, acking_into(seen))
    message = await asyncio.wait_for(seen.get(), GUARD_S)
    await consumer.stop()
    assert (message.message_id, message.attempt) == ("dq", 2)


async def test_consumption_resumes_after_the_connection_is_killed(rabbit: RabbitMQBus) -> None:
    queue = rabbit.queues.reports
    acked: set[str] = set()
    progress = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        try:
            await delivery.ack()
        except BusError:
            return  # the channel died under us: the broker redelivers it
        acked.add(delivery.message.message_id)
        progress.set()

    consumer = await rabbit.consume(queue, handler, prefetch=10)
    for i in range(50):
        await rabbit.publish(queue, b"before", message_id=f"b{i}")
    await asyncio.wait_for(progress.wait(), GUARD_S)

    assert await close_connection_by_name(rabbit.connection_name) == 1
    # Publishing right away waits for the robust connection to come back.
    for i in range(50):
        await rabbit.publish(queue, b"after", message_id=f"a{i}")

    expected = {f"b{i}" for i in range(50)} | {f"a{i}" for i in range(50)}
    while not expected <= acked:
        progress.clear()
        await asyncio.wait_for(progress.wait(), GUARD_S)
    await consumer.stop()
    assert await rabbit.queue_depth(queue) == 0
    assert await rabbit.consumer_count(queue) == 0


async def test_queues_are_quorum_and_a_classic_bus_on_them_fails_at_connect(
    rabbit: RabbitMQBus,
) -> None:
    await rabbit.declare(rabbit.queues.reports)
    listed = await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "-q", "--no-table-headers", "list_queues", "name", "type"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    types = dict(
        line.split("\t", 1)
        for line in listed.stdout.splitlines()
        if line.startswith(rabbit.queues.prefix + ".")
    )
    assert types == {rabbit.dlq_name: "quorum", rabbit.queues.reports: "quorum"}
    classic = RabbitMQBus(AMQP_URL, rabbit.queues, queue_type="classic")
    try:
        with pytest.raises(ConfigError) as info:
            await classic.connect()
    finally:
        await classic.close()
    text = str(info.value)
    assert f"{rabbit.dlq_name!r} exists on the broker as a quorum queue" in text
    assert "EXECFLOW_QUEUE_TYPE=quorum" in text


async def test_a_message_returned_past_the_delivery_limit_lands_in_the_dlq() -> None:
    need_service("rabbitmq")
    bus = await make_rabbit_bus(QueueNames(unique("eftest.")), delivery_limit=2)
    queue = bus.queues.worker("open")
    try:
        await bus.publish(queue, b"crasher", message_id="c1")
        for _ in range(3):  # delivered, given back; the third return is past the limit
            delivery = await bus.get(queue)
            assert delivery is not None and delivery.message.message_id == "c1"
            await delivery.nack(requeue=True)
        letter = None
        async with asyncio.timeout(GUARD_S):
            while letter is None:
                letter = await bus.get(bus.dlq_name)
        assert letter.message.message_id == "c1"
        assert letter.message.headers[H_REASON] == "broker_delivery_limit"
        assert letter.message.headers[H_ORIGINAL_QUEUE] == queue
        await letter.ack()
        assert await bus.queue_depth(queue) == 0
    finally:
        declared = set(bus.declared_queues)
        await bus.close()
        await delete_queues(declared)


async def test_a_host_list_connects_to_the_first_host_that_answers() -> None:
    need_service("rabbitmq")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    url = AMQP_URL.replace("127.0.0.1:5672", f"127.0.0.1:{closed},127.0.0.1:5672")
    bus = RabbitMQBus(url, QueueNames(unique("eftest.")), connection_name=unique("eftest-"))
    await bus.connect()
    try:
        message_id = await bus.publish(bus.queues.reports, b"x")
        delivery = await bus.get(bus.queues.reports)
        assert delivery is not None and delivery.message.message_id == message_id
        await delivery.ack()
    finally:
        declared = set(bus.declared_queues)
        await bus.close()
        await delete_queues(declared)


async def test_the_heartbeat_setting_reaches_the_connection() -> None:
    # a frozen process must lose its connection (and its consumers) within seconds of
    # amqp_heartbeat_s, which aiormq reads from the URL only
    need_service("rabbitmq")
    bus = await make_rabbit_bus(QueueNames(unique("eftest.")), heartbeat_s=3)
    try:
        connection = bus._connection
        assert connection is not None and connection.transport is not None
        negotiated = getattr(connection.transport.connection, "heartbeat_timeout", None)
        assert negotiated == 3
    finally:
        declared = set(bus.declared_queues)
        await bus.close()
        await delete_queues(declared)


class _Channel:
    """A channel whose declare is cut: by the connection dying (aiormq cancels the call)
    or, with ``hang``, by nothing (it waits for a cancellation of the caller)."""

    def __init__(self, hang: bool) -> None:
        self.hang = hang

    async def declare_queue(self, *args: object, **kwargs: object) -> object:
        if self.hang:
            await asyncio.Event().wait()
        raise asyncio.CancelledError


def _bus_on(channel: _Channel) -> RabbitMQBus:
    bus = RabbitMQBus("amqp://guest:guest@127.0.0.1:1/")
    bus._channel = channel  # type: ignore[assignment]

    async def declared(queue: str) -> None:
        return None

    bus.declare = declared  # type: ignore[method-assign]
    return bus


async def test_queue_counts_on_a_connection_lost_is_a_bus_error() -> None:
    with pytest.raises(BusError, match="connection lost"):
        await _bus_on(_Channel(hang=False)).queue_counts("q")


async def test_queue_counts_cancelled_stays_cancelled() -> None:
    task = asyncio.create_task(_bus_on(_Channel(hang=True)).queue_counts("q"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class _NackingUnderlay:
    """An aiormq channel whose broker nacks the first ``nacks`` publishes (a quorum queue
    electing a leader), then confirms."""

    def __init__(self, nacks: int) -> None:
        self.nacks = nacks
        self.calls = 0

    async def basic_publish(
        self, body: bytes, *, exchange: str, routing_key: str, properties: object, mandatory: bool
    ) -> object:
        self.calls += 1
        if self.calls <= self.nacks:
            raise aiormq.exceptions.DeliveryError(None, aiormq.spec.Basic.Nack(self.calls))
        return aiormq.spec.Basic.Ack(self.calls)


async def test_a_nacked_publish_is_retried_until_confirmed() -> None:
    underlay = _NackingUnderlay(nacks=2)
    bus = RabbitMQBus("amqp://guest:guest@127.0.0.1:1/")
    bus._channel = _RobustChannel(underlay)  # type: ignore[assignment]
    await bus._confirmed("q", [bus._build(b"x", None, None)])
    assert underlay.calls == 3


class _StuckUnderlay:
    """The aiormq channel of a channel RabbitMQ 3.10 got stuck on (``rabbitmq_nacks``):
    its broker nacks every publish to ``stuck_queue`` at once, confirms the others."""

    def __init__(self, stuck_queue: str | None) -> None:
        self.stuck_queue = stuck_queue
        self.published: list[str] = []

    async def basic_publish(
        self, body: bytes, *, exchange: str, routing_key: str, properties: object, mandatory: bool
    ) -> object:
        self.published.append(routing_key)
        if routing_key == self.stuck_queue:
            raise aiormq.exceptions.DeliveryError(None, aiormq.spec.Basic.Nack(1))
        return aiormq.spec.Basic.Ack(len(self.published))


class _RobustChannel:
    """aio-pika's robust channel around a fake aiormq channel (``underlay``)."""

    def __init__(self, underlay: Any) -> None:
        self.underlay = underlay
        self.is_closed = False

    async def get_underlay_channel(self) -> Any:
        return self.underlay


class _PublishingChannel(_RobustChannel):
    def __init__(self, stuck_queue: str | None) -> None:
        super().__init__(_StuckUnderlay(stuck_queue))
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class _Connection:
    """Opens channels that confirm everything; ``up`` False: a reconnection under way."""

    def __init__(self, up: bool = True) -> None:
        self.opened: list[_PublishingChannel] = []
        self.connected = asyncio.Event()
        if up:
            self.connected.set()
        self.is_closed = False

    async def channel(self, **kwargs: object) -> _PublishingChannel:
        self.opened.append(_PublishingChannel(stuck_queue=None))
        return self.opened[-1]


def _stuck_bus(
    connection: _Connection, stuck: _PublishingChannel, publish_timeout_s: float = 10.0
) -> RabbitMQBus:
    bus = RabbitMQBus(
        "amqp://guest:guest@127.0.0.1:1/",
        nack_replace_after_s=0.3,
        publish_timeout_s=publish_timeout_s,
    )
    bus._channel, bus._connection = stuck, connection  # type: ignore[assignment]
    return bus


async def test_a_channel_whose_publishes_stay_nacked_is_replaced_and_left_open() -> None:
    stuck, connection = _PublishingChannel(stuck_queue="db_updates"), _Connection()
    bus = _stuck_bus(connection, stuck)
    publishes = (bus._confirmed("db_updates", [bus._build(b"x", None, None)]) for _ in range(3))
    async with asyncio.timeout(GUARD_S):
        await asyncio.gather(*publishes)
    # one new channel however many publishes were nacked, every message confirmed on it,
    # and the stuck channel never closed (aio-pika may be restoring it)
    assert len(connection.opened) == 1
    assert connection.opened[0].underlay.published == ["db_updates"] * 3
    assert len(stuck.underlay.published) >= 6 and not stuck.closed
    assert bus._channel is connection.opened[0]  # type: ignore[comparison-overlap]


async def test_confirms_to_other_queues_do_not_hide_a_queue_stuck_on_the_channel() -> None:
    stuck, connection = _PublishingChannel(stuck_queue="db_updates"), _Connection()
    bus = _stuck_bus(connection, stuck)

    async def other_queue() -> None:
        while not connection.opened:
            await bus._confirmed("orders", [bus._build(b"o", None, None)])
            await asyncio.sleep(0.02)

    async with asyncio.timeout(GUARD_S):
        await asyncio.gather(
            bus._confirmed("db_updates", [bus._build(b"x", None, None)]), other_queue()
        )
    assert "orders" in stuck.underlay.published
    assert connection.opened[0].underlay.published[-1] == "db_updates"


async def test_no_channel_is_opened_while_the_connection_is_reconnecting() -> None:
    stuck, connection = _PublishingChannel(stuck_queue="db_updates"), _Connection(up=False)
    bus = _stuck_bus(connection, stuck, publish_timeout_s=1.0)
    with pytest.raises(BusError, match="not confirmed in time"):
        await bus._confirmed("db_updates", [bus._build(b"x", None, None)])
    assert connection.opened == [] and not stuck.closed
    assert bus._channel is stuck  # type: ignore[comparison-overlap]


async def test_held_acks_are_sent_and_never_cover_a_delivery_in_progress() -> None:
    need_service("rabbitmq")
    bus = await make_rabbit_bus(QueueNames(unique("eftest.")), prefetch=16, ack_delay_s=0.02)
    queue = bus.queues.reports
    await bus.declare(queue)
    try:
        for i in range(10):
            await bus.publish(queue, b"x", message_id=f"m{i}")
        done: asyncio.Queue[str] = asyncio.Queue()
        never = asyncio.Event()

        async def handler(delivery: Delivery) -> None:
            if delivery.message.message_id == "m3":
                await never.wait()  # still in progress when the consumer stops
            await delivery.ack()
            done.put_nowait(delivery.message.message_id)

        consumer = await bus.consume(queue, handler)
        acked = {await asyncio.wait_for(done.get(), GUARD_S) for _ in range(9)}
        assert "m3" not in acked
        await asyncio.sleep(0.1)  # past the delay: the held acks went out
        await consumer.stop()  # m3's handler is cancelled: its message goes back

        again: asyncio.Queue[Message] = asyncio.Queue()
        consumer = await bus.consume(queue, acking_into(again))
        back = await asyncio.wait_for(again.get(), GUARD_S)
        await asyncio.sleep(0.3)
        await consumer.stop()  # sends its held ack before it closes the channel
        assert back.message_id == "m3" and back.redelivered
        assert again.empty()  # the nine acked ones never came back
        assert await bus.queue_counts(queue) == (0, 0)
    finally:
        declared = set(bus.declared_queues)
        await bus.close()
        await delete_queues(declared)


class _NotReadyQueue:
    """A quorum queue whose Raft member is not up for its first ``fails`` consumes: the
    broker crashes the channel (``{error, noproc}``, an INTERNAL_ERROR)."""

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.consumes = 0

    async def consume(self, callback: object) -> str:
        self.consumes += 1
        if self.consumes <= self.fails:
            raise aiormq.exceptions.ConnectionInternalError("INTERNAL_ERROR")
        return "ctag"


class _ConsumerChannel:
    def __init__(self, queue: _NotReadyQueue) -> None:
        self.queue = queue
        self.is_closed = False

    async def set_qos(self, prefetch_count: int) -> None:
        pass

    async def declare_queue(self, name: str, **kwargs: object) -> _NotReadyQueue:
        return self.queue

    async def close(self) -> None:
        self.is_closed = True


class _ConsumerConnection:
    def __init__(self, queue: _NotReadyQueue) -> None:
        self.queue = queue
        self.opened: list[_ConsumerChannel] = []

    async def channel(self, **kwargs: object) -> _ConsumerChannel:
        self.opened.append(_ConsumerChannel(self.queue))
        return self.opened[-1]


def _consuming_bus(
    queue: _NotReadyQueue, publish_timeout_s: float
) -> tuple[RabbitMQBus, _ConsumerConnection]:
    bus = RabbitMQBus("amqp://guest:guest@127.0.0.1:1/", publish_timeout_s=publish_timeout_s)
    connection = _ConsumerConnection(queue)
    bus._connection = connection  # type: ignore[assignment]
    bus._declared["q"] = bus.queue_arguments("q")
    return bus, connection


async def _no_handler(delivery: Delivery) -> None:
    raise AssertionError("nothing is delivered here")


async def test_a_consume_refused_while_the_quorum_queue_starts_is_started_again() -> None:
    queue = _NotReadyQueue(fails=2)
    bus, connection = _consuming_bus(queue, publish_timeout_s=10.0)
    async with asyncio.timeout(GUARD_S):
        consumer = await bus.consume("q", _no_handler)
    # three channels: the two the broker crashed are closed, the third consumes
    assert queue.consumes == 3
    assert [c.is_closed for c in connection.opened] == [True, True, False]
    assert consumer.queue_name == "q" and consumer in bus._consumers


async def test_a_consume_refused_past_the_timeout_is_a_bus_error() -> None:
    queue = _NotReadyQueue(fails=10**6)
    bus, connection = _consuming_bus(queue, publish_timeout_s=0.5)
    async with asyncio.timeout(GUARD_S):
        with pytest.raises(BusError, match="consumer did not start in time"):
            await bus.consume("q", _no_handler)
    assert queue.consumes >= 2 and all(c.is_closed for c in connection.opened)
    assert not bus._consumers
