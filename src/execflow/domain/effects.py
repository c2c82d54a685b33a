"""Effects and calculations: what a transition asks the shell to publish and log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from execflow.domain.enums import RequestKind
from execflow.domain.messages import ProviderRequest

__all__ = [
    "Calculation",
    "CalculationName",
    "DbEvent",
    "Effect",
    "EventKind",
    "LpRequest",
    "OutboxEntry",
    "event_id",
]


class EventKind(StrEnum):
    """Kinds of order events written to the database."""

    ORDER_SUBMITTED = "ORDER_SUBMITTED"
    PENDING_SUBMITTED = "PENDING_SUBMITTED"
    MODIFY_REQUESTED = "MODIFY_REQUESTED"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    CLOSE_REQUESTED = "CLOSE_REQUESTED"
    LEG_REQUESTED = "LEG_REQUESTED"
    LEG_CANCEL_REQUESTED = "LEG_CANCEL_REQUESTED"
    ORDER_PARTIALLY_FILLED = "ORDER_PARTIALLY_FILLED"
    ORDER_OPENED = "ORDER_OPENED"
    ORDER_PARTIALLY_CLOSED = "ORDER_PARTIALLY_CLOSED"
    ORDER_CLOSED = "ORDER_CLOSED"
    PENDING_ACCEPTED = "PENDING_ACCEPTED"
    PENDING_MODIFIED = "PENDING_MODIFIED"
    PENDING_CANCELLED = "PENDING_CANCELLED"
    ORDER_REJECTED = "ORDER_REJECTED"
    REQUEST_REJECTED = "REQUEST_REJECTED"
    LEG_ACTIVE = "LEG_ACTIVE"
    LEG_CANCELLED = "LEG_CANCELLED"
    LEG_REJECTED = "LEG_REJECTED"


class CalculationName(StrEnum):
    """Names of the ``orders_calculated.log`` records."""

    ORDER_OPEN_CALC = "ORDER_OPEN_CALC"
    ORDER_CLOSE_CALC = "ORDER_CLOSE_CALC"
    MARGIN_RESERVE = "MARGIN_RESERVE"
    MARGIN_RELEASE = "MARGIN_RELEASE"


def event_id(order_id: str, key: str, kind: EventKind) -> str:
    """Deterministic event id: the same report always yields the same id."""
    return f"{order_id}:{key}:{kind.value}"


@dataclass(frozen=True, slots=True)
class DbEvent:
    """An order event for the database.

    ``payload`` is JSON-compatible: ``order`` and ``account`` snapshots (codec dicts,
    the order without its outbox), ``deltas`` (balance, used_margin_executed,
    used_margin_all as decimal strings) so a reconciler can recompute accounts from
    events alone, and ``report`` (the codec dict of the report) when one caused it.
    """

    event_id: str
    kind: EventKind
    account_id: str
    order_id: str
    exec_id: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class LpRequest:
    """A follow-up request to the LP; register ``request``'s lifecycle before sending."""

    request: ProviderRequest

    @property
    def kind(self) -> RequestKind:
        """The request kind (for the lifecycle record)."""
        return self.request.kind


Effect = DbEvent | LpRequest


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """Effects recorded with the transition that applied ``exec_id``."""

    exec_id: str
    effects: tuple[Effect, ...]


@dataclass(frozen=True, slots=True)
class Calculation:
    """One ``orders_calculated.log`` record: every input and output as decimal strings."""

    name: CalculationName
    order_id: str
    account_id: str
    symbol: str
    exec_id: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
