"""InMemoryBus-only behaviour: join() for tests, close, diagnostics."""

from __future__ import annotations

import asyncio

import pytest

from execflow.backends.bus import Delivery, QueueNames
from execflow.backends.memory_bus import InMemoryBus
from execflow.errors import BusError


@pytest.fixture
async def bus() -> InMemoryBus:
    memory = InMemoryBus(QueueNames("t"), prefetch=4, crash_requeue_delay_s=0.01)
    await memory.connect()
    return memory


async def test_join_waits_for_a_two_hop_relay_and_delayed_retries(bus: InMemoryBus) -> None:
    finished: list[str] = []

    async def hop_a(delivery: Delivery) -> None:
        if delivery.message.attempt == 1:
            await delivery.retry_later(0.02)
            return
        await bus.publish("t.b", delivery.message.body, delivery.message.headers)
        await delivery.ack()

    async def hop_b(delivery: Delivery) -> None:
        finished.append(delivery.message.body.decode())
        await delivery.ack()

    await bus.consume("t.a", hop_a)
    await bus.consume("t.b", hop_b)
    for i in range(20):
        await bus.publish("t.a", str(i).encode())
    await bus.join(timeout_s=10)
    assert sorted(finished, key=int) == [str(i) for i in range(20)]
    assert bus.pending()["t.a"] == (0, 0, 0)


async def test_join_reraises_a_handler_exception(bus: InMemoryBus) -> None:
    async def broken(delivery: Delivery) -> None:
        raise ZeroDivisionError("bug in handler")

    await bus.consume("t.x", broken)
    await bus.publish("t.x", b"1")
    with pytest.raises(ZeroDivisionError, match="bug in handler"):
        await bus.join(timeout_s=10)


async def test_join_reports_a_handler_that_forgot_to_settle(bus: InMemoryBus) -> None:
    async def forgetful(delivery: Delivery) -> None:
        return None

    await bus.consume("t.x", forgetful)
    await bus.publish("t.x", b"1")
    with pytest.raises(BusError, match="without settling"):
        await bus.join(timeout_s=10)


async def test_join_times_out_while_a_message_is_held(bus: InMemoryBus) -> None:
    gate = asyncio.Event()

    async def stuck(delivery: Delivery) -> None:
        await gate.wait()
        await delivery.ack()

    await bus.consume("t.x", stuck)
    await bus.publish("t.x", b"1")
    with pytest.raises(TimeoutError):
        await bus.join("t.x", timeout_s=0.05)
    gate.set()
    await bus.join("t.x", timeout_s=10)


async def test_join_ignores_the_dlq_and_queues_nobody_consumes(bus: InMemoryBus) -> None:
    async def to_dlq(delivery: Delivery) -> None:
        await delivery.dead_letter("unmapped_route")

    await bus.consume("t.x", to_dlq)
    await bus.publish("t.x", b"1")
    await bus.publish("t.sink", b"kept for inspection")
    await bus.join(timeout_s=10)
    assert await bus.queue_depth(bus.dlq_name) == 1
    assert await bus.queue_depth("t.sink") == 1


async def test_close_returns_unacked_messages_and_refuses_publishes(bus: InMemoryBus) -> None:
    held = asyncio.Event()

    async def hold(delivery: Delivery) -> None:
        held.set()
        await asyncio.Event().wait()

    await bus.consume("t.x", hold)
    await bus.publish("t.x", b"1")
    await asyncio.wait_for(held.wait(), 10)
    await bus.close()
    assert bus.pending()["t.x"] == (1, 0, 0)
    with pytest.raises(BusError):
        await bus.publish("t.x", b"2")


async def test_stop_drains_in_flight_handlers_within_the_timeout(bus: InMemoryBus) -> None:
    started = asyncio.Event()
    done: list[bytes] = []

    async def slow(delivery: Delivery) -> None:
        started.set()
        await asyncio.sleep(0.01)
        done.append(delivery.message.body)
        await delivery.ack()

    consumer = await bus.consume("t.x", slow, prefetch=1)
    await bus.publish("t.x", b"1")
    await asyncio.wait_for(started.wait(), 10)
    await consumer.stop(drain_timeout_s=10)
    assert done == [b"1"]
    assert bus.pending()["t.x"] == (0, 0, 0)


def test_queue_names_follow_the_prefix() -> None:
    names = QueueNames("execflow")
    assert names.reports == "execflow.reports"
    assert names.worker("open") == "execflow.worker.open"
    assert names.provider_requests == "execflow.provider_requests"
    assert names.db_updates == "execflow.db_updates"
    assert names.dlq == "execflow.dlq"
    assert len(names.all()) == 11
    with pytest.raises(ValueError):
        names.worker("nonsense")
