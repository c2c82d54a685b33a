"""Typed results of a transition: what the worker shell must do next."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from execflow.domain.effects import Calculation, Effect
from execflow.domain.models import Account, Order

__all__ = [
    "MISSING_CONVERSION_RATE",
    "OVERFILL",
    "PRICE_OUT_OF_BAND",
    "REPORT_MISMATCH",
    "Applied",
    "Duplicate",
    "Invalid",
    "Mismatch",
    "NeedsReview",
    "Outcome",
    "Stale",
    "TooEarly",
]

MISSING_CONVERSION_RATE = "missing_conversion_rate"
"""``TooEarly`` reason when a USD rate is missing: park, then DLQ with this reason."""

REPORT_MISMATCH = "report_mismatch"
"""``Mismatch`` reason: the report names another symbol or side than its order."""
OVERFILL = "overfill"
"""``Mismatch`` reason: the report's quantities exceed what the order can fill."""
PRICE_OUT_OF_BAND = "price_out_of_band"
"""``Mismatch`` reason: the fill price is outside the band around the quote."""


@dataclass(frozen=True, slots=True)
class Applied:
    """Write ``order`` and ``account`` (version-checked), then publish ``effects``.

    ``order.outbox`` already holds ``effects`` under the report's exec_id, and the
    exec_id is in ``order.applied_exec_ids``: one write makes the report applied.
    ``account`` is the unchanged input when the transition did not touch it.
    """

    order: Order
    account: Account
    effects: tuple[Effect, ...]
    calculations: tuple[Calculation, ...] = ()

    def account_changed(self, before: Account) -> bool:
        """True when the account must be written too."""
        return self.account != before


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The exec_id was applied already: ack, and re-publish these recorded effects."""

    effects: tuple[Effect, ...]


@dataclass(frozen=True, slots=True)
class Stale:
    """The report arrived too late to change anything: ack and log as skipped."""

    reason: str


@dataclass(frozen=True, slots=True)
class TooEarly:
    """A precondition is not met yet: park and retry with backoff."""

    reason: str


@dataclass(frozen=True, slots=True)
class NeedsReview:
    """Money may have moved twice or inconsistently: DLQ for review, ERROR line."""

    reason: str


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The report contradicts its order: never applied; DLQ with ``reason``, ERROR line.

    ``fields`` names each contradicting field with what the report said and what the
    order expected (``report=GBPUSD expected=EURUSD``).
    """

    reason: str
    fields: Mapping[str, str]

    @property
    def detail(self) -> str:
        """One line naming every contradicting field."""
        return "; ".join(f"{name}: {said}" for name, said in self.fields.items())


@dataclass(frozen=True, slots=True)
class Invalid:
    """The report cannot apply to this order at all (wrong kind, missing data): DLQ."""

    reason: str


Outcome = Applied | Duplicate | Stale | TooEarly | NeedsReview | Mismatch | Invalid
