"""The account document written by ``transact`` is the DB event's snapshot, encoded once."""

from __future__ import annotations

from dataclasses import replace

from execflow.domain.codec import account_to_dict
from execflow.domain.effects import DbEvent, EventKind
from execflow.domain.outcomes import Applied
from execflow.domain.transitions._common import event_payload
from execflow.pipeline.transact import applied_account_doc
from tests.domain.factories import account, market_order


def _applied(snapshot_version_offset: int = 0) -> Applied:
    before = account()
    after = replace(before, version=before.version + 1)
    order = market_order()
    snapshot_of = replace(after, version=after.version + snapshot_version_offset)
    event = DbEvent(
        "ev1",
        EventKind.ORDER_SUBMITTED,
        after.account_id,
        order.order_id,
        "x1",
        event_payload(order, before, snapshot_of, None),
    )
    return Applied(order, after, (event,))


def test_the_db_event_snapshot_is_reused() -> None:
    outcome = _applied()
    doc = applied_account_doc(outcome)
    event = outcome.effects[0]
    assert isinstance(event, DbEvent)
    assert doc is event.payload["account"]
    assert doc == account_to_dict(outcome.account)


def test_a_snapshot_of_another_version_is_not_reused() -> None:
    outcome = _applied(snapshot_version_offset=1)
    doc = applied_account_doc(outcome)
    event = outcome.effects[0]
    assert isinstance(event, DbEvent)
    assert doc is not event.payload["account"]
    assert doc == account_to_dict(outcome.account)


def test_without_a_db_event_the_account_is_encoded() -> None:
    outcome = replace(_applied(), effects=())
    assert applied_account_doc(outcome) == account_to_dict(outcome.account)
