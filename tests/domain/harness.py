"""A tiny in-memory pipeline over the pure domain: route, transition, keep state."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from execflow.domain.account_rows import ACCOUNT_CHANGES, AccountFold
from execflow.domain.codec import account_to_dict
from execflow.domain.effects import DbEvent, LpRequest
from execflow.domain.enums import ReportStatus
from execflow.domain.intake import Accepted, IntakeDecision
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import (
    Account,
    InstrumentConfig,
    LifecycleRecord,
    Order,
    Prices,
    lifecycle_of,
)
from execflow.domain.outcomes import Applied, Outcome
from execflow.domain.routing import Decision, Route, decide
from execflow.domain.transitions import apply
from tests.domain.factories import INSTRUMENTS, NOW, PRICES

D = Decimal


@dataclass
class Book:
    """Orders, accounts and lifecycle records, updated only through domain functions."""

    accounts: dict[str, Account]
    orders: dict[str, Order] = field(default_factory=dict)
    lifecycles: dict[str, LifecycleRecord] = field(default_factory=dict)
    instruments: dict[str, InstrumentConfig] = field(default_factory=lambda: dict(INSTRUMENTS))
    prices: Prices = PRICES
    sent: list[LpRequest] = field(default_factory=list)

    def take(self, result: IntakeDecision) -> Accepted:
        """Store an accepted intake result (fails the test when refused)."""
        assert isinstance(result, Accepted), result
        before = self.accounts.get(result.account.account_id)
        if before is not None:
            check_events_fold(before, result.account, result.events)
        self.orders[result.order.order_id] = result.order
        self.accounts[result.account.account_id] = result.account
        self.lifecycles[result.lifecycle.lifecycle_id] = result.lifecycle
        return result

    def route(self, report: ExecutionReport) -> Decision:
        """The dispatcher's decision for a report."""
        return decide(report, self.lifecycles.get(report.lifecycle_id or ""))

    def deliver(self, report: ExecutionReport) -> Outcome | Decision:
        """Route and apply one report; store an Applied result and its follow-ups."""
        decision = self.route(report)
        if not isinstance(decision, Route):
            return decision
        record = self.lifecycles[report.lifecycle_id or ""]
        order = self.orders[record.order_id]
        account = self.accounts[order.account_id]
        outcome = apply(
            decision.worker,
            order,
            account,
            self.instruments[order.symbol],
            self.prices,
            report,
            record.kind,
            NOW,
        )
        if isinstance(outcome, Applied):
            check_events_fold(account, outcome.account, outcome.effects)
            self.orders[order.order_id] = outcome.order
            self.accounts[account.account_id] = outcome.account
            for effect in outcome.effects:
                if isinstance(effect, LpRequest):
                    self.sent.append(effect)
                    self.lifecycles[effect.request.lifecycle_id] = lifecycle_of(effect.request)
        return outcome


def check_events_fold(before: Account, after: Account, effects: Iterable[object]) -> None:
    """The DB events' account header and changes, folded onto ``before``, give ``after``.

    Every transition the domain tests run is checked: a change the payload forgot (a
    position or reservation of another order) would leave the database's rows behind.
    """
    fold = AccountFold(before.account_id)
    fold.add_snapshot(account_to_dict(before))
    for effect in effects:
        if isinstance(effect, DbEvent):
            changes = effect.payload.get(ACCOUNT_CHANGES)
            fold.add_payload(effect.payload["account"], changes)
    assert fold.document() == account_to_dict(after)


def fill(
    lifecycle_id: str,
    exec_id: str,
    cum_qty: str,
    avg_px: str,
    status: ReportStatus = ReportStatus.EXECUTED,
) -> ExecutionReport:
    """A fill report with cumulative quantity and average price."""
    return ExecutionReport(
        exec_id=exec_id,
        ord_status=status,
        lifecycle_id=lifecycle_id,
        cum_qty=D(cum_qty),
        avg_px=D(avg_px),
    )


def report(
    lifecycle_id: str,
    exec_id: str,
    status: ReportStatus,
    level: str | None = None,
    reason: str | None = None,
) -> ExecutionReport:
    """A non-fill report (ack, modify, cancel, reject)."""
    return ExecutionReport(
        exec_id=exec_id,
        ord_status=status,
        lifecycle_id=lifecycle_id,
        price=None if level is None else D(level),
        reason=reason,
    )
