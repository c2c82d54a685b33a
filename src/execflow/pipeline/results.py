"""What a handler returns: the runner settles the delivery and logs the outcome line.

A handler never acks, retries or dead-letters by itself. It does its work (commits the
state, publishes effects with confirms) and returns one of these; the runner then
settles the delivery, writes the outcome line (after the settle, so the line is true),
and counts it. An exception instead of a result means "retry with backoff".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from execflow.logs.events import INFO, WARNING

__all__ = ["Ack", "AckOutcome", "DeadLetter", "HandlerResult", "Park"]

AckOutcome = Literal["success", "skipped"]


@dataclass(frozen=True, slots=True)
class Ack:
    """Done: acknowledge, then log ``tag`` (if any) and count ``outcome``.

    ``success`` lines are INFO with ``processing_time_ms``; ``skipped`` lines use
    ``level`` (INFO, or DEBUG for noise such as ignored heartbeats).
    """

    tag: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    outcome: AckOutcome = "success"
    level: int = INFO


@dataclass(frozen=True, slots=True)
class Park:
    """Too early: come back later (the consumer's park policy gives the delay).

    After the policy's ``max_attempts`` parks the message is dead-lettered with
    ``exhausted_reason`` (default: the park policy's, ``precondition_timeout``).
    """

    reason: str
    exhausted_reason: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Never retry: publish to the DLQ with ``reason`` and ``error``, then log at ``level``.

    ``level`` is WARNING for expected rejects (malformed input) and ERROR for what a
    person must look at (money may have moved twice): the ERROR line also lands in
    ``provider_errors.log``.
    """

    reason: str
    error: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    level: int = WARNING
    body: bytes | None = None
    """What the DLQ keeps instead of the original body (None: the original)."""


HandlerResult = Ack | Park | DeadLetter
