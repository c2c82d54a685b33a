"""The queue sampler reads depth and consumers from the bus into the queue gauges."""

from __future__ import annotations

import asyncio

from execflow.backends.bus import Delivery
from execflow.backends.memory_bus import InMemoryBus
from execflow.metrics import Metrics
from execflow.pipeline.queue_sampler import QueueSampler, sampled_queues
from execflow.pipeline.services import Services


def _gauge(metrics: Metrics, name: str, queue: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"queue": queue})


async def test_depth_and_consumers_per_queue(services: Services, bus: InMemoryBus) -> None:
    queues = bus.queues
    open_q, close_q = queues.worker("open"), queues.worker("close")
    release = asyncio.Event()

    async def hold(delivery: Delivery) -> None:
        await release.wait()  # unacked (not ready) until released
        await delivery.ack()

    for queue in (open_q, close_q):
        await bus.declare(queue)
    for body in (b"1", b"2", b"3"):
        await bus.publish(close_q, body)
    consumer = await bus.consume(open_q, hold, prefetch=1)
    await bus.publish(open_q, b"a")
    await bus.publish(open_q, b"b")
    await asyncio.sleep(0)
    metrics = Metrics("dispatcher")
    log = services.logger("dispatcher")
    sampler = QueueSampler(bus, metrics, log, (open_q, close_q), interval_s=60)
    found = await sampler.sample()
    # open: one held by its consumer (prefetch 1), one ready; close: three ready, nobody
    assert found == {open_q: (1, 1), close_q: (3, 0)}
    assert _gauge(metrics, "execflow_queue_depth", close_q) == 3
    assert _gauge(metrics, "execflow_queue_consumers", close_q) == 0
    assert _gauge(metrics, "execflow_queue_consumers", open_q) == 1
    release.set()
    await consumer.stop(drain_timeout_s=1)
    # the timer: the first sample happens at start, the consumer gone is seen
    sampler.start()
    for _ in range(100):
        await asyncio.sleep(0)
        if _gauge(metrics, "execflow_queue_consumers", open_q) == 0:
            break
    await sampler.stop()
    assert _gauge(metrics, "execflow_queue_consumers", open_q) == 0


def test_sampled_queues_are_the_pipeline_the_dlq_and_each_lp(bus: InMemoryBus) -> None:
    names = bus.queues
    sampled = sampled_queues(bus, ["lmax", "cmc"])
    assert sampled[: len(names.all())] == names.all()
    assert sampled[-2:] == (names.provider_requests_of("cmc"), names.provider_requests_of("lmax"))
    assert names.dlq in sampled and names.db_updates in sampled
