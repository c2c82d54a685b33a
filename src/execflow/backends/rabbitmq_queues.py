"""RabbitMQ queue arguments per queue type, and what a queue declared otherwise means.

Quorum queues (the default, ``EXECFLOW_QUEUE_TYPE=quorum``) are replicated on a majority
of the cluster's nodes: a node lost is not its queues lost. Every argument is set
explicitly, the same on every declaration (RabbitMQ refuses a re-declaration whose
arguments differ):

* work queues: ``x-queue-type: quorum``; dead-lettering to the DLQ through the default
  exchange (``x-dead-letter-exchange: ""``, ``x-dead-letter-routing-key: {dlq}``),
  ``x-dead-letter-strategy: at-least-once`` (the message leaves the queue only once the
  DLQ confirmed it; RabbitMQ requires ``x-overflow: reject-publish`` for it), and
  ``x-delivery-limit``. The delivery limit is a backstop, not the retry policy: the
  pipeline's own retries and dead-lettering (``retry_later`` / ``dead_letter``) publish
  a new message each time, so the broker's delivery count only grows when a message
  goes back to its queue unsettled (a handler that crashed, a consumer stopped or a
  connection lost mid-message). A message that comes back that often (default 20, well
  above the runner's 5 retries and 8 parks, and above a handful of outages in a row)
  is one that kills its consumer; the broker moves it to the DLQ instead of letting
  it loop forever.
* delay queues ``{queue}.delay.{ms}``: quorum too (a retry waiting in a delay queue must
  survive the node that holds it), ``x-message-ttl`` and dead-lettering back to
  ``{queue}``, at-least-once. Quorum queues expire only the message at their head, which
  is exactly right here: every message of a delay queue has the same TTL.
* the DLQ: quorum, no dead-letter exchange and no delivery limit (``drain_dlq`` gives a
  message back when the database refuses it: it must never be dropped for that).

Classic queues (``EXECFLOW_QUEUE_TYPE=classic``) are declared as before this setting
existed (only ``x-queue-type: classic`` added, which RabbitMQ accepts on a classic queue
declared without it), so a deployment keeps its existing queues.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from execflow.backends.bus import H_ORIGINAL_QUEUE, H_REASON
from execflow.errors import ConfigError

__all__ = [
    "DEFAULT_DELIVERY_LIMIT",
    "DELAY_BUCKETS_MS",
    "QUEUE_TYPES",
    "QueueArguments",
    "QueueType",
    "broker_dead_letter_headers",
    "declaration_refused",
    "delay_bucket_ms",
    "delay_queue_name",
    "delay_queue_names",
]

QueueType = Literal["quorum", "classic"]
QUEUE_TYPES: tuple[QueueType, ...] = ("quorum", "classic")
DEFAULT_DELIVERY_LIMIT = 20
MIGRATION_DOC = "docs/running.md, 'Migrating from classic queues'"

_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for queue '(?P<queue>[^']+)'.*?"
    r"received (?P<received>.+?) but current is (?P<current>.+)$"
)
_QUOTED = re.compile(r"'([^']*)'")

# Delays are rounded up to one of these, so the number of delay queues stays bounded.
DELAY_BUCKETS_MS: tuple[int, ...] = (
    50,
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    900_000,
)


def delay_bucket_ms(delay_s: float) -> int:
    """The smallest bucket >= ``delay_s`` (the largest bucket for longer delays)."""
    wanted = max(0.0, delay_s) * 1000.0
    for bucket in DELAY_BUCKETS_MS:
        if bucket >= wanted:
            return bucket
    return DELAY_BUCKETS_MS[-1]


def delay_queue_name(queue: str, bucket_ms: int) -> str:
    """The delay queue of ``queue`` for the bucket ``bucket_ms``."""
    return f"{queue}.delay.{bucket_ms}"


def delay_queue_names(queues: Iterable[str]) -> tuple[str, ...]:
    """Every delay queue ``queues`` can have, one per queue and bucket: what a clean-up
    deletes (the processes that declared them may be gone)."""
    return tuple(delay_queue_name(q, bucket) for q in queues for bucket in DELAY_BUCKETS_MS)


@dataclass(frozen=True, slots=True)
class QueueArguments:
    """The ``x-*`` arguments of each kind of queue for one queue type."""

    queue_type: QueueType
    dlq: str
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT

    def for_queue(self, queue: str) -> dict[str, Any]:
        """The arguments of a work queue, or of the DLQ when ``queue`` is it."""
        if queue == self.dlq:
            return {"x-queue-type": self.queue_type}
        if self.queue_type == "classic":
            return {"x-queue-type": "classic"}
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dlq,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-delivery-limit": self.delivery_limit,
        }

    def for_delay(self, target: str, ttl_ms: int) -> dict[str, Any]:
        """A delay queue: messages wait ``ttl_ms``, then go (dead-lettered) to ``target``."""
        arguments: dict[str, Any] = {
            "x-queue-type": self.queue_type,
            "x-message-ttl": ttl_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": target,
        }
        if self.queue_type == "quorum":
            arguments["x-dead-letter-strategy"] = "at-least-once"
            arguments["x-overflow"] = "reject-publish"
        return arguments


def declaration_refused(queue: str, wanted: QueueType, reply_text: str) -> ConfigError:
    """The startup error for a queue the broker holds with other arguments.

    ``reply_text`` is the broker's ``PRECONDITION_FAILED`` text, e.g. ``inequivalent arg
    'x-queue-type' for queue 'q' in vhost '/': received the value 'quorum' of type
    'longstr' but current is none``.
    """
    found = _INEQUIVALENT.search(reply_text)
    if found is not None and found["arg"] == "x-queue-type":
        quoted = _QUOTED.search(found["current"])
        # a queue declared without x-queue-type is a classic one
        current = quoted.group(1) if quoted else "classic"
        return ConfigError(
            f"queue {queue!r} exists on the broker as a {current} queue, but "
            f"queue_type (EXECFLOW_QUEUE_TYPE) is {wanted!r}; RabbitMQ cannot change the "
            f"type of an existing queue: set EXECFLOW_QUEUE_TYPE={current} to keep using "
            f"the existing queues, or migrate them ({MIGRATION_DOC})",
            setting="queue_type",
            queue=queue,
            current_type=current,
            wanted_type=wanted,
        )
    argument = found["arg"] if found is not None else "unknown"
    return ConfigError(
        f"queue {queue!r} exists on the broker with other arguments than execflow declares "
        f"({argument}: {reply_text}); RabbitMQ cannot change them on an existing queue: "
        f"drain and delete it, or re-create it ({MIGRATION_DOC})",
        setting="queue_type",
        queue=queue,
        argument=argument,
    )


def broker_dead_letter_headers(headers: Mapping[str, str], x_death: object) -> dict[str, str]:
    """``x-reason`` / ``x-original-queue`` for a message the broker dead-lettered itself.

    Messages ``Delivery.dead_letter`` moved carry them already. One the broker moved (a
    quorum queue's delivery limit reached, a message rejected without requeue) carries
    only RabbitMQ's ``x-death`` (most recent first) and ``x-first-death-*`` headers: the
    reason becomes ``broker_<reason>`` (e.g. ``broker_delivery_limit``).
    """
    if H_REASON in headers:
        return dict(headers)
    reason: str | None = None
    queue: str | None = None
    if isinstance(x_death, Sequence) and x_death and isinstance(x_death[0], Mapping):
        latest = x_death[0]
        reason, queue = _text(latest.get("reason")), _text(latest.get("queue"))
    reason = reason or headers.get("x-first-death-reason")
    queue = queue or headers.get("x-first-death-queue")
    if reason is None:
        return dict(headers)
    out = dict(headers)
    out[H_REASON] = f"broker_{reason}"
    if queue is not None:
        out.setdefault(H_ORIGINAL_QUEUE, queue)
    return out


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None
