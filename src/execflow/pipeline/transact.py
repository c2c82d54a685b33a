"""Load, transition, compare-and-set: the one place a worker writes the state.

``transact`` reads the order, its account, the instrument config and the prices, runs
the pure transition with ``now`` from the clock, and commits an ``Applied`` result with
the versions it read. When another consumer committed the same order or account in
between (``VersionConflict``), it reloads and re-runs the transition, up to
``max_conflicts`` times; then the conflict propagates and the runner retries the
message with backoff. An outcome that refuses the report (stale, contradicting, invalid,
for review) writes nothing, so nothing checks its reads: on a store whose master may
have been replaced meanwhile (``FailoverReads``) it is confirmed first, else the
``StoreError`` has the runner retry the message, reads and all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from execflow.backends.state import FailoverReads, StateStore, Versioned, Write
from execflow.domain.codec import order_from_dict, order_to_dict
from execflow.domain.guard import GuardPolicy
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import Account, LifecycleRecord, Order, Prices
from execflow.domain.outcomes import Applied, Duplicate, Outcome, TooEarly
from execflow.domain.routing import Worker
from execflow.domain.transitions import apply
from execflow.errors import StoreError, VersionConflict
from execflow.logs.events import EventLogger
from execflow.pipeline.account_io import AccountWrite, account_write, read_account
from execflow.pipeline.refdata import load_account, load_instrument
from execflow.pipeline.services import Services

__all__ = ["MAX_CONFLICTS", "OrderMissing", "Transacted", "transact"]

MAX_CONFLICTS = 5
"""Reload-and-retry rounds on ``VersionConflict`` before the runner's backoff takes over."""


class OrderMissing(StoreError):
    """The lifecycle names an order the state store does not hold: retry (rebuild may run)."""


@dataclass(frozen=True, slots=True)
class Transacted:
    """The outcome, what it was computed from, and how many conflicts it took."""

    outcome: Outcome
    order: Order
    account: Account
    conflicts: int = 0


async def transact(
    services: Services,
    worker: Worker,
    lifecycle: LifecycleRecord,
    report: ExecutionReport,
    log: EventLogger,
    tag: str,
    max_conflicts: int = MAX_CONFLICTS,
    amend: Callable[[Applied], Applied] | None = None,
) -> Transacted:
    """Apply ``report`` to its order; an ``Applied`` outcome is committed on return.

    ``amend`` rewrites an ``Applied`` outcome before it is committed (an operator's
    resolution adds who and why to its DB events, ``domain.resolution.with_note``).
    """
    conflicts = 0
    policy = GuardPolicy(price_band=services.settings.price_band_pct / 100)
    while True:
        order_doc, account_doc, prices, token = await _load_docs(services, lifecycle, log, tag)
        order = order_from_dict(order_doc.data)
        account, account_doc = await read_account(
            services.decoded,
            lifecycle.account_id,
            account_doc,
            lambda: load_account(services, lifecycle.account_id, log, tag),
        )
        instrument = await load_instrument(services, order.group, order.symbol, token)
        now = services.clock.now()
        outcome = apply(
            worker, order, account, instrument, prices, report, lifecycle.kind, now, policy
        )
        if not isinstance(outcome, Applied):
            if not isinstance(outcome, (Duplicate, TooEarly)):
                # a refusal writes nothing: its reads must not be a replaced master's
                await _confirm_current(services.state, lifecycle)
            return Transacted(outcome, order, account, conflicts)
        if amend is not None:
            outcome = amend(outcome)
        writes = [Write("order", order.order_id, order_doc.version, order_to_dict(outcome.order))]
        planned: AccountWrite | None = None
        if outcome.account_changed(account):
            # its header and the rows that changed (the whole of an account not kept as rows)
            planned = account_write(account_doc, account, outcome.account)
            writes.append(planned.write)
        try:
            await services.state.commit(account.account_id, writes)
        except VersionConflict as exc:
            conflicts += 1
            log.info(
                f"{tag}:VERSION_CONFLICT",
                order_id=order.order_id,
                attempt=conflicts,
                max_attempts=max_conflicts,
                kind=exc.fields.get("kind"),
            )
            if conflicts >= max_conflicts:
                raise
            continue
        if planned is not None:
            planned.remember(services.decoded)
        return Transacted(outcome, order, account, conflicts)


async def _confirm_current(state: StateStore, lifecycle: LifecycleRecord) -> None:
    if isinstance(state, FailoverReads):
        await state.confirm_current(lifecycle.account_id, lifecycle.order_id)


async def _load_docs(
    services: Services, lifecycle: LifecycleRecord, log: EventLogger, tag: str
) -> tuple[Versioned, Versioned, Prices, str | None]:
    """Order, account head, quotes and the instrument configs' token in one read (one
    round trip on Redis, not four)."""
    reads = await services.state.read_for_transition(lifecycle.account_id, lifecycle.order_id)
    if reads.order is None:
        raise OrderMissing(
            "order is not in the state store",
            order_id=lifecycle.order_id,
            account_id=lifecycle.account_id,
        )
    account_doc = reads.account
    if account_doc is None:  # the store lost it: from the database, cached back, logged
        account_doc = await load_account(services, lifecycle.account_id, log, tag)
    prices = services.decoded.prices(reads.prices)
    return reads.order, account_doc, prices, reads.instruments_token
