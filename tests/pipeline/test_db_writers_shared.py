"""Two db writers on one RabbitMQ queue, PostgreSQL behind them: events arriving shuffled
and duplicated still leave one row per event and, per order and per account, the row of
the newest version (docs/pipeline.md, "Several db writers")."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from execflow.domain.effects import DbEvent, EventKind
from execflow.pipeline.audit import verify_chains
from execflow.settings import Settings
from tests.pipeline.test_audit_writers import (
    all_written,
    publish,
    writers_on_rabbitmq,
    written_stats,
)

pytestmark = pytest.mark.integration

_KINDS = (
    (EventKind.ORDER_SUBMITTED, "PENDING_OPEN"),
    (EventKind.ORDER_OPENED, "OPEN"),
    (EventKind.ORDER_CLOSED, "CLOSED"),
)
ACCOUNTS = 4
ORDERS = 60


def history() -> tuple[list[DbEvent], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Each order's three events in order, every account's versions rising across its orders.

    Returns the events and the newest order and account snapshots they carry.
    """
    events: list[DbEvent] = []
    orders: dict[str, dict[str, Any]] = {}
    accounts: dict[str, dict[str, Any]] = {}
    account_versions = dict.fromkeys((f"live:{n}" for n in range(ACCOUNTS)), 0)
    for n in range(ORDERS):
        account_id = f"live:{n % ACCOUNTS}"
        order_id = f"o{n}"
        for version, (kind, status) in enumerate(_KINDS, start=1):
            account_versions[account_id] += 1
            account_version = account_versions[account_id]
            order = {"order_id": order_id, "status": status, "version": version}
            account = {
                "account_id": account_id,
                "balance": f"{10_000 - account_version}.00",
                "version": account_version,
            }
            events.append(
                DbEvent(
                    event_id=f"{order_id}:x{version}:{kind.value}",
                    kind=kind,
                    account_id=account_id,
                    order_id=order_id,
                    exec_id=f"x{n}.{version}",
                    payload={"order": order, "account": account, "deltas": {}, "report": None},
                )
            )
            orders[order_id] = order
            accounts[account_id] = account
    return events, orders, accounts


async def test_two_db_writers_keep_the_newest_rows_whatever_the_order_and_duplicates(
    settings: Settings, pg_url: str, tmp_path: Path
) -> None:
    events, newest_orders, newest_accounts = history()
    # every event once and a third of them again (redeliveries), all shuffled: a newer
    # snapshot often reaches a writer, or the database, before an older one
    sent = [*events, *events[::3]]
    random.Random(14).shuffle(sent)
    assert sent[: len(events)] != events
    async with writers_on_rabbitmq(settings, pg_url, tmp_path, 2, "efwriters", 10) as writers:
        first = writers[0][0]
        for _, _, runner in writers:
            await runner.start()
        await publish(first, sent)
        await all_written(first, len(events))
        stats = await written_stats(writers, len(events))
        assert all(s.get("batches", 0) for s in stats), stats  # both writers wrote
        assert sum(s.get("events_inserted", 0) for s in stats) == len(events)
        database = first.database
        assert await database.count_events() == len(events)
        rows = await database.list_orders()
        assert {r.order_id: (r.status, r.version, r.data) for r in rows} == {
            oid: (o["status"], o["version"], o) for oid, o in newest_orders.items()
        }
        # the header, assembled with the account's rows (none here)
        assert {a.account_id: (a.version, a.data) for a in await database.list_accounts()} == {
            aid: (a["version"], {**a, "positions": [], "reservations": []})
            for aid, a in newest_accounts.items()
        }
        report = await verify_chains(database)
        assert (report.ok, report.accounts, report.events) == (True, ACCOUNTS, len(events))
