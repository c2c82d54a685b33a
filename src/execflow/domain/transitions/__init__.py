"""One pure transition per worker duty (DESIGN §4), looked up by worker name."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from execflow.domain.enums import RequestKind
from execflow.domain.guard import DEFAULT_POLICY, GuardPolicy, check_report
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import Account, InstrumentConfig, Order, Prices
from execflow.domain.outcomes import Outcome
from execflow.domain.routing import Worker
from execflow.domain.transitions._common import FOLLOW_UPS, OUTBOX_SIZE, Transition, duplicate
from execflow.domain.transitions.cancel import apply_cancel
from execflow.domain.transitions.close import apply_close
from execflow.domain.transitions.legs import apply_stoploss, apply_takeprofit
from execflow.domain.transitions.open import apply_open
from execflow.domain.transitions.pending import apply_pending
from execflow.domain.transitions.reject import apply_reject

__all__ = [
    "FOLLOW_UPS",
    "OUTBOX_SIZE",
    "TRANSITIONS",
    "Transition",
    "apply",
    "apply_cancel",
    "apply_close",
    "apply_open",
    "apply_pending",
    "apply_reject",
    "apply_stoploss",
    "apply_takeprofit",
]

TRANSITIONS: Mapping[Worker, Transition] = {
    Worker.OPEN: apply_open,
    Worker.CLOSE: apply_close,
    Worker.PENDING: apply_pending,
    Worker.CANCEL: apply_cancel,
    Worker.REJECT: apply_reject,
    Worker.STOPLOSS: apply_stoploss,
    Worker.TAKEPROFIT: apply_takeprofit,
}
"""Worker -> its transition; a worker shell needs nothing else from the domain."""


def apply(
    worker: Worker,
    order: Order,
    account: Account,
    instrument: InstrumentConfig,
    prices: Prices,
    report: ExecutionReport,
    kind: RequestKind,
    now: datetime,
    policy: GuardPolicy = DEFAULT_POLICY,
) -> Outcome:
    """Run the transition of ``worker`` on a report the guard found consistent.

    The exec_id ledger is consulted first: a report applied already is a duplicate
    whatever it says, so its recorded effects can be re-published.
    """
    if (dup := duplicate(order, report)) is not None:
        return dup
    if (mismatch := check_report(order, report, kind, prices, policy)) is not None:
        return mismatch
    return TRANSITIONS[worker](order, account, instrument, prices, report, kind, now)
