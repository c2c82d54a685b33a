"""In-memory bus with the real semantics: prefetch, redelivery, delayed retry, DLQ.

Used by the embedded deployment and by unit tests. ``join()`` waits until the pipeline
is idle and re-raises the first exception a handler raised, so a crashing handler
fails the test instead of being swallowed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from execflow.backends.bus import (
    H_ATTEMPT,
    H_MESSAGE_ID,
    Delivery,
    DeliveryHandler,
    Message,
    OutgoingMessage,
    QueueNames,
    attempt_of,
    dead_letter_headers,
    retry_headers,
)
from execflow.clock import Clock, IdGenerator, SystemClock, UuidIds
from execflow.errors import BusError

__all__ = ["InMemoryBus"]

log = logging.getLogger("execflow.backends.memory_bus")


@dataclass(slots=True)
class _Envelope:
    body: bytes
    headers: dict[str, str]
    message_id: str
    redelivered: bool = False


@dataclass(eq=False, slots=True)
class _Queue:
    name: str
    ready: deque[_Envelope] = field(default_factory=deque)
    consumers: list[_MemoryConsumer] = field(default_factory=list)
    unacked: int = 0
    delayed: int = 0
    next_consumer: int = 0

    def idle(self) -> bool:
        return not self.ready and self.unacked == 0 and self.delayed == 0


class _MemoryDelivery:
    """One delivery; settling it updates the queue's counters and wakes the dispatcher."""

    ack_never_suspends = True  # bus.ACK_NEVER_SUSPENDS: ``ack`` below has no await

    def __init__(
        self, bus: InMemoryBus, queue: _Queue, env: _Envelope, consumer: _MemoryConsumer | None
    ) -> None:
        self._bus = bus
        self._queue = queue
        self._env = env
        self._consumer = consumer
        self.settled = False
        self.message = Message(
            body=env.body,
            headers=dict(env.headers),
            message_id=env.message_id,
            queue=queue.name,
            attempt=attempt_of(env.headers),
            redelivered=env.redelivered,
        )

    def _settle(self) -> None:
        if self.settled:
            raise BusError("delivery already settled", message_id=self._env.message_id)
        self.settled = True
        self._queue.unacked -= 1
        if self._consumer is not None:
            self._consumer.unacked.discard(self)

    async def ack(self) -> None:
        """Remove the message from its queue (no await: ``ack_never_suspends``)."""
        self._settle()
        self._bus._changed(self._queue)

    async def nack(self, requeue: bool = True) -> None:
        """Return the message to the head of its queue, or drop it."""
        self._settle()
        if requeue:
            self._bus._requeue(self._queue, self._env)
        self._bus._changed(self._queue)

    async def retry_later(self, delay_s: float, headers: Mapping[str, str] | None = None) -> None:
        """Publish a copy with attempt + 1 after ``delay_s``, then ack."""
        if self.settled:
            raise BusError("delivery already settled", message_id=self._env.message_id)
        new_headers = retry_headers(self._env.headers, self.message.attempt, headers)
        self._bus._publish_delayed(self._queue, self._env, new_headers, max(0.0, delay_s))
        await self.ack()

    async def dead_letter(
        self, reason: str, error: str | None = None, body: bytes | None = None
    ) -> None:
        """Move the message to the DLQ with ``x-*`` headers, then ack."""
        if self.settled:
            raise BusError("delivery already settled", message_id=self._env.message_id)
        headers = dead_letter_headers(
            self._env.headers,
            reason=reason,
            error=error,
            original_queue=self._queue.name,
            attempt=self.message.attempt,
            now=self._bus.clock.now(),
        )
        kept = self._env.body if body is None else body
        await self._bus.publish(self._bus.dlq_name, kept, headers, self._env.message_id)
        await self.ack()


class _MemoryConsumer:
    """A subscription: the bus hands it messages while it has prefetch room."""

    def __init__(
        self, bus: InMemoryBus, queue: _Queue, handler: DeliveryHandler, prefetch: int
    ) -> None:
        self._bus = bus
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self.unacked: set[_MemoryDelivery] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopped = False

    def has_room(self) -> bool:
        return not self.stopped and len(self.unacked) < self.prefetch

    def start(self, delivery: _MemoryDelivery) -> None:
        self.unacked.add(delivery)
        task = asyncio.create_task(self._run(delivery), name=f"consume:{self.queue.name}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, delivery: _MemoryDelivery) -> None:
        try:
            await self.handler(delivery)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error(
                "handler raised; message returned to its queue",
                extra={"queue": self.queue.name, "message_id": delivery.message.message_id},
                exc_info=True,
            )
            self._bus._errors.append(exc)
        else:
            if delivery.settled:
                return
            error = BusError(
                "handler returned without settling the delivery",
                queue=self.queue.name,
                message_id=delivery.message.message_id,
            )
            log.error(str(error))
            self._bus._errors.append(error)
        self._bus._changed(self.queue)
        # Pause before the redelivery so a crashing handler does not spin.
        await asyncio.sleep(self._bus.crash_requeue_delay_s)
        if not delivery.settled:
            await delivery.nack(requeue=True)

    async def stop(self, drain_timeout_s: float = 0.0) -> None:
        """Stop intake; after ``drain_timeout_s`` cancel handlers and requeue their messages."""
        if self.stopped:
            return
        self.stopped = True
        if self in self.queue.consumers:
            self.queue.consumers.remove(self)
        if self.tasks and drain_timeout_s > 0:
            await asyncio.wait(set(self.tasks), timeout=drain_timeout_s)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for delivery in list(self.unacked):
            await delivery.nack(requeue=True)
        self._bus._changed(self.queue)


class InMemoryBus:
    """The ``Bus`` port in one process."""

    def __init__(
        self,
        names: QueueNames | None = None,
        prefetch: int = 64,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        crash_requeue_delay_s: float = 0.05,
    ) -> None:
        self._names = names or QueueNames()
        self.default_prefetch = prefetch
        self.clock: Clock = clock or SystemClock()
        self._ids: IdGenerator = ids or UuidIds()
        self.crash_requeue_delay_s = crash_requeue_delay_s
        self._queues: dict[str, _Queue] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._errors: list[BaseException] = []
        self._wakeup = asyncio.Event()
        self._closed = False

    # -- Bus port -----------------------------------------------------------------------

    @property
    def queues(self) -> QueueNames:
        """The queue names of this bus."""
        return self._names

    @property
    def dlq_name(self) -> str:
        """The dead-letter queue."""
        return self._names.dlq

    async def connect(self) -> None:
        """Declare the DLQ."""
        self._closed = False
        self._queue(self.dlq_name)

    async def close(self) -> None:
        """Stop every consumer and cancel pending delayed messages."""
        for queue in self._queues.values():
            for consumer in list(queue.consumers):
                await consumer.stop()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for queue in self._queues.values():
            queue.delayed = 0
        self._closed = True
        self._wakeup.set()

    async def declare(self, queue: str) -> None:
        """Create the queue if needed."""
        self._queue(queue)

    async def publish(
        self,
        queue: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        message_id: str | None = None,
    ) -> str:
        """Append a message to the queue."""
        self._check_open()
        env = self._envelope(body, headers, message_id)
        target = self._queue(queue)
        target.ready.append(env)
        self._changed(target)
        return env.message_id

    async def publish_batch(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Append several messages, in order."""
        return [await self.publish(queue, m.body, m.headers, m.message_id) for m in messages]

    async def consume(
        self, queue: str, handler: DeliveryHandler, prefetch: int | None = None
    ) -> _MemoryConsumer:
        """Start delivering ``queue`` to ``handler``."""
        self._check_open()
        limit = prefetch if prefetch is not None else self.default_prefetch
        if limit < 1:
            raise ValueError("prefetch must be >= 1")
        target = self._queue(queue)
        consumer = _MemoryConsumer(self, target, handler, limit)
        target.consumers.append(consumer)
        self._changed(target)
        return consumer

    async def get(self, queue: str) -> Delivery | None:
        """Take the head of the queue, unacked, or ``None``."""
        target = self._queue(queue)
        if not target.ready:
            return None
        target.unacked += 1
        return _MemoryDelivery(self, target, target.ready.popleft(), None)

    async def queue_depth(self, queue: str) -> int:
        """Ready messages."""
        return len(self._queue(queue).ready)

    async def consumer_count(self, queue: str) -> int:
        """Attached consumers."""
        return len(self._queue(queue).consumers)

    async def queue_counts(self, queue: str) -> tuple[int, int]:
        """Ready messages and attached consumers."""
        found = self._queue(queue)
        return len(found.ready), len(found.consumers)

    # -- test support ---------------------------------------------------------------------

    async def join(self, *queues: str, timeout_s: float | None = None) -> None:
        """Wait until the queues are idle (nothing ready, unacked or delayed).

        Without arguments: every queue but the DLQ that has a consumer or has messages
        in flight. Re-raises the first exception a handler raised; ``TimeoutError``
        after ``timeout_s``.
        """
        async with asyncio.timeout(timeout_s):
            while True:
                self._wakeup.clear()
                if self._errors:
                    raise self._errors.pop(0)
                if all(q.idle() for q in self._joined(queues)):
                    return
                await self._wakeup.wait()

    def pending(self) -> dict[str, tuple[int, int, int]]:
        """(ready, unacked, delayed) per queue, for diagnostics."""
        return {n: (len(q.ready), q.unacked, q.delayed) for n, q in self._queues.items()}

    # -- internals ------------------------------------------------------------------------

    def _joined(self, names: tuple[str, ...]) -> list[_Queue]:
        if names:
            return [self._queue(name) for name in names]
        return [
            q
            for q in self._queues.values()
            if q.name != self.dlq_name and (q.consumers or q.unacked or q.delayed)
        ]

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("bus is closed")

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue(name)
        return queue

    def _envelope(
        self, body: bytes, headers: Mapping[str, str] | None, message_id: str | None
    ) -> _Envelope:
        merged = dict(headers or {})
        mid = message_id or merged.get(H_MESSAGE_ID) or self._ids.new_id()
        merged[H_MESSAGE_ID] = mid
        merged.setdefault(H_ATTEMPT, "1")
        return _Envelope(body=bytes(body), headers=merged, message_id=mid)

    def _requeue(self, queue: _Queue, env: _Envelope) -> None:
        env.redelivered = True
        queue.ready.appendleft(env)

    def _publish_delayed(
        self, queue: _Queue, env: _Envelope, headers: dict[str, str], delay_s: float
    ) -> None:
        copy = _Envelope(body=env.body, headers=headers, message_id=env.message_id)
        queue.delayed += 1
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def fire() -> None:
            if timer is not None:
                self._timers.discard(timer)
            queue.delayed -= 1
            queue.ready.append(copy)
            self._changed(queue)

        timer = loop.call_later(delay_s, fire)
        self._timers.add(timer)

    def _changed(self, queue: _Queue) -> None:
        self._dispatch(queue)
        self._wakeup.set()

    def _dispatch(self, queue: _Queue) -> None:
        """Hand ready messages to consumers with room, round-robin."""
        while queue.ready:
            consumers = [c for c in queue.consumers if c.has_room()]
            if not consumers:
                return
            consumer = consumers[queue.next_consumer % len(consumers)]
            queue.next_consumer += 1
            queue.unacked += 1
            consumer.start(_MemoryDelivery(self, queue, queue.ready.popleft(), consumer))
