"""The message bus port: durable queues, manual ack, delayed retry, dead-lettering.

Two implementations pass the same contract suite: ``InMemoryBus`` (embedded
deployment, unit tests) and ``RabbitMQBus`` (aio-pika). The bus moves bytes and
string headers; it never knows a domain class.

Semantics every implementation keeps:

* ``publish`` returns only once the message is durable (RabbitMQ: publisher confirm).
* A consumer holds at most ``prefetch`` unacknowledged deliveries; handlers for them
  run concurrently, one task per delivery.
* A delivery that is not settled (ack / nack / retry_later / dead_letter) when its
  consumer stops, or when its connection dies, returns to its queue and is delivered
  again with ``redelivered=True``.
* A handler that raises, or returns without settling, is a bug of the caller: the bus
  logs it at ERROR and returns the message to its queue after a short pause (never drops it).
  ``InMemoryBus.join()`` re-raises it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

__all__ = [
    "ACK_NEVER_SUSPENDS",
    "H_ATTEMPT",
    "H_ATTEMPTS",
    "H_DEAD_LETTERED_AT",
    "H_ERROR",
    "H_MESSAGE_ID",
    "H_ORIGINAL_QUEUE",
    "H_REASON",
    "H_TRACE_ID",
    "Bus",
    "Consumer",
    "Delivery",
    "DeliveryHandler",
    "Message",
    "OutgoingMessage",
    "QueueNames",
    "attempt_of",
    "dead_letter_headers",
    "retry_headers",
]

# Header names. Values are always strings.
H_TRACE_ID = "trace_id"
H_ATTEMPT = "attempt"
H_MESSAGE_ID = "message_id"
# Set on a message moved to the DLQ by ``Delivery.dead_letter``.
H_REASON = "x-reason"
H_ERROR = "x-error"
H_ORIGINAL_QUEUE = "x-original-queue"
H_ATTEMPTS = "x-attempts"
H_DEAD_LETTERED_AT = "x-dead-lettered-at"

WORKER_KINDS = ("open", "close", "pending", "cancel", "reject", "stoploss", "takeprofit")


@dataclass(frozen=True, slots=True)
class Message:
    """One delivered message, as a handler sees it."""

    body: bytes
    headers: Mapping[str, str]
    message_id: str
    queue: str
    attempt: int = 1
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message for ``Bus.publish_batch``."""

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    message_id: str | None = None


def attempt_of(headers: Mapping[str, str]) -> int:
    """The ``attempt`` header as an int (1 when absent or malformed)."""
    raw = headers.get(H_ATTEMPT, "1")
    try:
        return max(1, int(raw))
    except ValueError:
        return 1


def retry_headers(
    headers: Mapping[str, str], attempt: int, overrides: Mapping[str, str] | None
) -> dict[str, str]:
    """Headers of a ``retry_later`` copy: the original's, ``overrides``, ``attempt`` + 1."""
    new_headers = {**headers, **(overrides or {})}
    new_headers[H_ATTEMPT] = str(attempt + 1)
    return new_headers


def dead_letter_headers(
    headers: Mapping[str, str],
    *,
    reason: str,
    error: str | None,
    original_queue: str,
    attempt: int,
    now: datetime,
) -> dict[str, str]:
    """Headers of a message moved to the DLQ: the original's plus the ``x-*`` set."""
    new_headers = dict(headers)
    new_headers[H_REASON] = reason
    if error is not None:
        new_headers[H_ERROR] = error
    new_headers[H_ORIGINAL_QUEUE] = original_queue
    new_headers[H_ATTEMPTS] = str(attempt)
    new_headers[H_DEAD_LETTERED_AT] = now.isoformat()
    return new_headers


@dataclass(frozen=True, slots=True)
class QueueNames:
    """Every queue name of the pipeline, built from ``settings.queue_prefix``."""

    prefix: str = "execflow"

    def name(self, suffix: str) -> str:
        """``{prefix}.{suffix}``."""
        return f"{self.prefix}.{suffix}"

    @property
    def reports(self) -> str:
        """Execution reports from the LP, consumed by the dispatcher."""
        return self.name("reports")

    @property
    def provider_requests(self) -> str:
        """Requests to the LP (or the simulator)."""
        return self.name("provider_requests")

    def provider_requests_of(self, lp: str | None) -> str:
        """The requests queue of one LP (``provider_requests.NAME``); None: the shared one."""
        return self.provider_requests if lp is None else self.name(f"provider_requests.{lp}")

    @property
    def db_updates(self) -> str:
        """Events and snapshots for the db writer."""
        return self.name("db_updates")

    @property
    def dlq(self) -> str:
        """The dead-letter queue."""
        return self.name("dlq")

    def worker(self, kind: str) -> str:
        """The queue of one worker kind, e.g. ``execflow.worker.open``."""
        if kind not in WORKER_KINDS:
            raise ValueError(f"unknown worker kind {kind!r}; expected one of {WORKER_KINDS}")
        return self.name(f"worker.{kind}")

    def all(self) -> tuple[str, ...]:
        """Every pipeline queue (workers included, DLQ last)."""
        workers = tuple(self.worker(kind) for kind in WORKER_KINDS)
        return (self.reports, *workers, self.provider_requests, self.db_updates, self.dlq)


ACK_NEVER_SUSPENDS = "ack_never_suspends"
"""An optional class attribute of a ``Delivery``: True when its ``ack`` has no await in it
(the in-memory bus's), so no cancellation can cut it; the runner then settles an ``Ack``
inline instead of in a shielded task. A delivery without it is taken as one that may."""


class Delivery(Protocol):
    """A message handed to a consumer, settled exactly once by one of four calls.

    Settling twice raises ``BusError``.
    """

    @property
    def message(self) -> Message:
        """The delivered message."""
        ...

    async def ack(self) -> None:
        """Done with it: remove it from the queue."""
        ...

    async def nack(self, requeue: bool = True) -> None:
        """Give it back (``requeue=True``, delivered again) or drop it (``False``)."""
        ...

    async def retry_later(self, delay_s: float, headers: Mapping[str, str] | None = None) -> None:
        """Re-publish to the same queue after ``delay_s`` with ``attempt`` + 1, then ack.

        ``headers`` are merged over the original ones. The copy is confirmed durable
        before the original is acknowledged. RabbitMQ rounds the delay up to a bucket.
        """
        ...

    async def dead_letter(
        self, reason: str, error: str | None = None, body: bytes | None = None
    ) -> None:
        """Publish the original body (or ``body``) to the DLQ with ``x-*`` headers, then ack.

        Headers added: ``x-reason``, ``x-error`` (when given), ``x-original-queue``,
        ``x-attempts`` and ``x-dead-lettered-at`` (ISO-8601 UTC). ``body`` replaces the
        original only where keeping it whole is the harm (an oversize message keeps its
        first bytes).
        """
        ...


DeliveryHandler = Callable[[Delivery], Awaitable[None]]


class Consumer(Protocol):
    """A running subscription to one queue."""

    async def stop(self, drain_timeout_s: float = 0.0) -> None:
        """Stop intake, let in-flight handlers finish for up to ``drain_timeout_s``,
        then cancel the rest; every unsettled delivery returns to its queue."""
        ...


class Bus(Protocol):
    """Durable queues with manual acknowledgement."""

    @property
    def queues(self) -> QueueNames:
        """The queue names of this deployment."""
        ...

    @property
    def dlq_name(self) -> str:
        """Where ``Delivery.dead_letter`` publishes."""
        ...

    async def connect(self) -> None:
        """Open connections and declare the DLQ; idempotent."""
        ...

    async def close(self) -> None:
        """Stop every consumer (unsettled deliveries return to their queues), then disconnect."""
        ...

    async def declare(self, queue: str) -> None:
        """Create ``queue`` (durable) if it does not exist."""
        ...

    async def publish(
        self,
        queue: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        message_id: str | None = None,
    ) -> str:
        """Publish one persistent message; return its message id once durable.

        Missing ``message_id`` / ``attempt`` headers are filled in (new id, ``"1"``).
        """
        ...

    async def publish_batch(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Publish several messages, confirmed together; return their ids in order."""
        ...

    async def consume(
        self, queue: str, handler: DeliveryHandler, prefetch: int | None = None
    ) -> Consumer:
        """Deliver messages of ``queue`` to ``handler``; at most ``prefetch`` unacked.

        ``prefetch=None`` uses the bus default (``settings.prefetch``).
        """
        ...

    async def get(self, queue: str) -> Delivery | None:
        """Take one message without a consumer (DLQ listing and replay); ``None`` if empty."""
        ...

    async def queue_depth(self, queue: str) -> int:
        """Messages ready for delivery (not counting unacked or delayed ones)."""
        ...

    async def consumer_count(self, queue: str) -> int:
        """Consumers currently attached to ``queue``."""
        ...

    async def queue_counts(self, queue: str) -> tuple[int, int]:
        """``(queue_depth, consumer_count)`` of ``queue``, read together (one broker call)."""
        ...
