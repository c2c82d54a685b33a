"""The bus contract, run against InMemoryBus and RabbitMQBus."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from execflow.backends.bus import (
    H_ATTEMPTS,
    H_DEAD_LETTERED_AT,
    H_ERROR,
    H_ORIGINAL_QUEUE,
    H_REASON,
    Bus,
    Delivery,
    Message,
    OutgoingMessage,
)
from execflow.errors import BusError

# A guard against hangs, never an assertion about speed.
GUARD_S = 20.0


async def take(queue: asyncio.Queue[Message], count: int) -> list[Message]:
    """The next ``count`` messages a test handler saw."""
    return [await asyncio.wait_for(queue.get(), GUARD_S) for _ in range(count)]


def acking(seen: asyncio.Queue[Message]):  # type: ignore[no-untyped-def]
    async def handler(delivery: Delivery) -> None:
        await delivery.ack()
        seen.put_nowait(delivery.message)

    return handler


async def test_publish_consume_ack_keeps_headers(bus: Bus) -> None:
    queue = bus.queues.reports
    seen: asyncio.Queue[Message] = asyncio.Queue()
    mid = await bus.publish(queue, b"hello", {"trace_id": "tr-1"}, message_id="m-1")
    assert mid == "m-1"
    consumer = await bus.consume(queue, acking(seen))
    (message,) = await take(seen, 1)
    assert message.body == b"hello"
    assert message.message_id == "m-1"
    assert message.queue == queue
    assert message.attempt == 1
    assert message.redelivered is False
    assert message.headers["trace_id"] == "tr-1"
    assert message.headers["message_id"] == "m-1"
    await consumer.stop()
    assert await bus.queue_depth(queue) == 0


async def test_generated_message_ids_are_unique(bus: Bus) -> None:
    ids = {await bus.publish(bus.queues.db_updates, b"x") for _ in range(20)}
    assert len(ids) == 20
    assert await bus.queue_depth(bus.queues.db_updates) == 20


async def test_publish_batch_keeps_order(bus: Bus) -> None:
    queue = bus.queues.worker("open")
    batch = [OutgoingMessage(str(i).encode(), {"trace_id": f"t{i}"}) for i in range(30)]
    ids = await bus.publish_batch(queue, batch)
    assert len(set(ids)) == 30
    assert await bus.queue_depth(queue) == 30
    seen: asyncio.Queue[Message] = asyncio.Queue()
    consumer = await bus.consume(queue, acking(seen), prefetch=1)
    bodies = [m.body for m in await take(seen, 30)]
    await consumer.stop()
    assert bodies == [str(i).encode() for i in range(30)]


async def test_prefetch_bounds_unacked_deliveries(bus: Bus) -> None:
    queue = bus.queues.worker("close")
    for i in range(10):
        await bus.publish(queue, str(i).encode())
    release = asyncio.Event()
    seen: asyncio.Queue[Message] = asyncio.Queue()
    in_flight = 0
    most_in_flight = 0

    async def handler(delivery: Delivery) -> None:
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        seen.put_nowait(delivery.message)
        await release.wait()
        in_flight -= 1
        await delivery.ack()

    consumer = await bus.consume(queue, handler, prefetch=3)
    await take(seen, 3)
    # Three are held unacked: the other seven must still be ready in the queue.
    assert await bus.queue_depth(queue) == 7
    release.set()
    await take(seen, 7)
    await consumer.stop(drain_timeout_s=GUARD_S)
    assert most_in_flight <= 3
    assert await bus.queue_depth(queue) == 0


async def test_unacked_messages_return_when_consumer_stops(bus: Bus) -> None:
    queue = bus.queues.worker("pending")
    for i in range(5):
        await bus.publish(queue, str(i).encode(), message_id=f"m{i}")
    held: asyncio.Queue[Message] = asyncio.Queue()
    never = asyncio.Event()

    async def hold(delivery: Delivery) -> None:
        held.put_nowait(delivery.message)
        await never.wait()

    first = await bus.consume(queue, hold, prefetch=5)
    await take(held, 5)
    await first.stop()

    seen: asyncio.Queue[Message] = asyncio.Queue()
    second = await bus.consume(queue, acking(seen))
    again = await take(seen, 5)
    await second.stop()
    assert sorted(m.message_id for m in again) == [f"m{i}" for i in range(5)]
    assert all(m.redelivered for m in again)


async def test_nack_requeue_redelivers_and_nack_drop_removes(bus: Bus) -> None:
    queue = bus.queues.worker("cancel")
    await bus.publish(queue, b"again", message_id="again")
    await bus.publish(queue, b"drop", message_id="drop")
    seen: asyncio.Queue[Message] = asyncio.Queue()
    nacked: set[str] = set()

    async def handler(delivery: Delivery) -> None:
        mid = delivery.message.message_id
        if mid == "drop":
            await delivery.nack(requeue=False)
        elif mid not in nacked:
            nacked.add(mid)
            await delivery.nack(requeue=True)
        else:
            await delivery.ack()
        seen.put_nowait(delivery.message)

    consumer = await bus.consume(queue, handler, prefetch=1)
    messages = await take(seen, 3)
    await consumer.stop()
    again = [m for m in messages if m.message_id == "again"]
    assert [m.redelivered for m in again] == [False, True]
    assert [m.message_id for m in messages].count("drop") == 1
    assert await bus.queue_depth(queue) == 0


async def test_retry_later_republishes_with_next_attempt(bus: Bus) -> None:
    queue = bus.queues.worker("reject")
    await bus.publish(queue, b"body", {"trace_id": "tr"}, message_id="r-1")
    seen: asyncio.Queue[Message] = asyncio.Queue()

    async def handler(delivery: Delivery) -> None:
        seen.put_nowait(delivery.message)
        if delivery.message.attempt < 3:
            await delivery.retry_later(0.05, {"x-park-reason": "too_early"})
        else:
            await delivery.ack()

    consumer = await bus.consume(queue, handler)
    messages = await take(seen, 3)
    await consumer.stop()
    assert [m.attempt for m in messages] == [1, 2, 3]
    assert {m.message_id for m in messages} == {"r-1"}
    assert {m.body for m in messages} == {b"body"}
    assert messages[2].headers["trace_id"] == "tr"
    assert messages[2].headers["x-park-reason"] == "too_early"
    assert "x-death" not in messages[2].headers
    assert await bus.queue_depth(queue) == 0


async def test_dead_letter_moves_message_to_dlq_with_reason(bus: Bus) -> None:
    queue = bus.queues.reports
    await bus.publish(queue, b"\x00bad", {"trace_id": "tr-9", "attempt": "5"}, message_id="d-1")
    seen: asyncio.Queue[Message] = asyncio.Queue()

    async def handler(delivery: Delivery) -> None:
        await delivery.dead_letter("malformed_report", "ReportError: exec_id missing")
        seen.put_nowait(delivery.message)

    consumer = await bus.consume(queue, handler)
    await take(seen, 1)
    await consumer.stop()
    assert await bus.queue_depth(queue) == 0
    assert await bus.queue_depth(bus.dlq_name) == 1

    dead = await bus.get(bus.dlq_name)
    assert dead is not None
    message = dead.message
    assert message.body == b"\x00bad"
    assert message.message_id == "d-1"
    assert message.headers[H_REASON] == "malformed_report"
    assert message.headers[H_ERROR] == "ReportError: exec_id missing"
    assert message.headers[H_ORIGINAL_QUEUE] == queue
    assert message.headers[H_ATTEMPTS] == "5"
    assert message.headers["trace_id"] == "tr-9"
    assert datetime.fromisoformat(message.headers[H_DEAD_LETTERED_AT]).tzinfo is not None
    await dead.ack()
    assert await bus.get(bus.dlq_name) is None


async def test_get_leaves_message_until_settled(bus: Bus) -> None:
    queue = bus.queues.provider_requests
    assert await bus.get(queue) is None
    await bus.publish(queue, b"one", message_id="g-1")
    taken = await bus.get(queue)
    assert taken is not None
    assert taken.message.message_id == "g-1"
    await taken.nack(requeue=True)
    again = await bus.get(queue)
    assert again is not None
    assert again.message.redelivered is True
    await again.ack()
    assert await bus.queue_depth(queue) == 0


async def test_settling_twice_is_an_error(bus: Bus) -> None:
    queue = bus.queues.worker("stoploss")
    await bus.publish(queue, b"x")
    delivery = await bus.get(queue)
    assert delivery is not None
    await delivery.ack()
    with pytest.raises(BusError):
        await delivery.ack()
    with pytest.raises(BusError):
        await delivery.dead_letter("late")


async def test_consumer_count_follows_consumers(bus: Bus) -> None:
    queue = bus.queues.worker("takeprofit")
    seen: asyncio.Queue[Message] = asyncio.Queue()
    assert await bus.consumer_count(queue) == 0
    one = await bus.consume(queue, acking(seen))
    two = await bus.consume(queue, acking(seen))
    assert await bus.consumer_count(queue) == 2
    await one.stop()
    await two.stop()
    assert await bus.consumer_count(queue) == 0


async def test_crashing_handler_never_loses_the_message(bus: Bus) -> None:
    queue = bus.queues.name("crashy")
    await bus.publish(queue, b"boom", message_id="c-1")
    seen: asyncio.Queue[Message] = asyncio.Queue()
    crashes = 0

    async def handler(delivery: Delivery) -> None:
        nonlocal crashes
        seen.put_nowait(delivery.message)
        if crashes == 0:
            crashes += 1
            raise RuntimeError("handler bug")
        await delivery.ack()

    consumer = await bus.consume(queue, handler, prefetch=1)
    first, second = await take(seen, 2)
    await consumer.stop()
    assert first.message_id == second.message_id == "c-1"
    assert second.redelivered is True
    assert await bus.queue_depth(queue) == 0
