"""DB events carry the account's header and changes: the database, several db writers,
rebuild and reconcile keep the whole account from them, and from older whole-account events.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from execflow.backends.database import AccountRecord, Database, EventRecord
from execflow.backends.sql import SqlDatabase
from execflow.backends.state import Write
from execflow.domain.accounting import reserve
from execflow.domain.codec import account_to_dict
from execflow.domain.effects import DbEvent, EventKind
from execflow.domain.models import Account
from execflow.pipeline.dbwriter import write_batch
from execflow.pipeline.rebuild import rebuild_state
from execflow.pipeline.reconcile import reconcile
from execflow.pipeline.services import Services
from tests.domain.account_history import History, account_history
from tests.domain.factories import account

D = Decimal
ACCOUNT = "live:6"


def _start() -> Account:
    """The account as seeded: margin held for an order in flight, at version 3."""
    return replace(reserve(account(), "seeded", D("108.50")), version=3)


def _events(history: History, whole_until: int = 0) -> list[DbEvent]:
    """The history's DB events; the first ``whole_until`` carry the whole account (as
    events stored before the header-and-changes payload did)."""
    events = []
    for n, (payload, order_id) in enumerate(zip(history.payloads, history.order_ids, strict=True)):
        body: dict[str, Any] = dict(payload)
        if n < whole_until:
            body.pop("account_changes", None)
            body["account"] = account_to_dict(history.accounts[n])
        events.append(
            DbEvent(
                f"{order_id}:x{n}:ORDER_OPENED",
                EventKind.ORDER_OPENED,
                ACCOUNT,
                order_id,
                f"x{n}",
                body,
            )
        )
    return events


async def _seeded(services: Services, start: Account) -> None:
    await services.database.upsert_accounts(
        [AccountRecord(ACCOUNT, start.version, account_to_dict(start))]
    )


async def _rows(database: Database) -> tuple[dict[str, Any], set[tuple[Any, ...]]]:
    record = await database.get_account(ACCOUNT)
    assert record is not None
    rows = {(r.kind, r.order_id, r.version, r.live) for r in record.rows}
    return record.data, rows


async def test_several_db_writers_in_any_order_end_with_one_writers_account(
    services: Services, tmp_path: Path
) -> None:
    history = account_history(60, seed=7, start=_start())
    events = _events(history, whole_until=5)
    await _seeded(services, history.start)
    for n in range(0, len(events), 10):  # one writer, in order
        await write_batch(services, events[n : n + 10])

    many = SqlDatabase(f"sqlite+aiosqlite:///{tmp_path / 'many.db'}")
    await many.connect()
    try:
        others = replace(services, database=many)
        await _seeded(others, history.start)
        stream = [*events, *events[::4]]  # redeliveries
        random.Random(11).shuffle(stream)
        batches = [stream[n : n + 7] for n in range(0, len(stream), 7)]

        async def writer(mine: list[list[DbEvent]]) -> None:
            for batch in mine:
                await write_batch(others, batch)

        await asyncio.gather(*(writer(batches[w::3]) for w in range(3)))
        one_data, one_rows = await _rows(services.database)
        many_data, many_rows = await _rows(many)
    finally:
        await many.close()
    assert one_data == many_data == account_to_dict(history.final)
    assert one_rows == many_rows


async def test_rebuild_and_reconcile_from_whole_account_and_changed_row_events(
    services: Services,
) -> None:
    history = account_history(40, seed=3, start=_start())
    events = _events(history, whole_until=12)
    await _seeded(services, history.start)
    await write_batch(services, events[:30])
    # the last events are stored, but the db writer stopped before their account rows
    await services.database.insert_events(_records(events[30:]))
    account_doc = await services.database.get_account(ACCOUNT)
    assert account_doc is not None and account_doc.version < history.final.version

    report = await rebuild_state(
        services.state, services.database, None, services.logger("supervisor")
    )
    assert report.accounts == 1
    stored = await services.state.get_account(ACCOUNT)
    assert stored is not None and stored.data == account_to_dict(history.final)

    verdict = await reconcile(services.database, services.state)
    assert verdict.ok, verdict.differences

    # reconcile reads the new payloads: a wrong balance in the state is seen
    wrong = {**stored.data, "balance": str(history.final.balance + 1)}
    await services.state.commit(ACCOUNT, [Write("account", ACCOUNT, stored.version, wrong)])
    verdict = await reconcile(services.database, services.state)
    assert [d.what for d in verdict.differences] == ["balance"]


def _records(events: list[DbEvent]) -> list[EventRecord]:
    return [
        EventRecord(e.event_id, e.order_id, e.account_id, e.kind.value, dict(e.payload), e.exec_id)
        for e in events
    ]
