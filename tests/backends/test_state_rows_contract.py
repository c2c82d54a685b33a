"""The state store contract for accounts kept as a header plus one row per position.

Run against every backend (``store`` fixture): the whole document reads back exactly, a
head read costs the header only, a commit of changed rows keeps the compare-and-set of
a whole write, and an account not kept as rows refuses a rows write.
"""

from __future__ import annotations

from typing import Any

import pytest

from execflow.backends.state import RowChanges, StateStore, Versioned, Write, position_rows
from execflow.errors import StoreError, VersionConflict

ACCOUNT = "live:6"


def position(order_id: str, lots: str = "1") -> dict[str, Any]:
    return {"order_id": order_id, "symbol": "EURUSD", "side": "BUY", "lots": lots}


def document(*order_ids: str, balance: str = "1000.00") -> dict[str, Any]:
    """An account document as ``codec.account_to_dict`` orders its keys."""
    return {
        "account_id": ACCOUNT,
        "balance": balance,
        "positions": [position(o) for o in order_ids],
        "reservations": [{"order_id": "r1", "amount": "5.00"}],
        "version": 3,
    }


def header(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "positions": []}


async def stored(store: StateStore, *order_ids: str) -> Versioned:
    await store.commit(ACCOUNT, [Write("account", ACCOUNT, 0, document(*order_ids))])
    whole = await store.get_account(ACCOUNT)
    assert whole is not None
    return whole


async def test_a_whole_document_reads_back_exactly_and_its_head_is_the_header(
    store: StateStore,
) -> None:
    whole = await stored(store, "o1", "o2", "o3")
    assert whole.version == 1 and whole.stamp
    assert whole.data == document("o1", "o2", "o3")
    assert list(whole.data) == list(document())  # key order kept
    head = await store.get_account_head(ACCOUNT)
    assert head == Versioned(1, header(document()), whole.stamp)
    reads = await store.read_for_transition(ACCOUNT, "o9")
    assert reads.account == head


async def test_changed_rows_are_applied_under_the_account_version(store: StateStore) -> None:
    whole = await stored(store, "o1", "o3")
    assert whole.stamp is not None
    changed = RowChanges({"o2": position("o2", "2")}, ["o1"], "s-2")
    new_header = header(document(balance="990.00"))
    await store.commit(
        ACCOUNT,
        [
            Write("account", ACCOUNT, 1, new_header, changed),
            Write("order", "o2", 0, {"status": "OPEN"}),
        ],
    )
    after = await store.get_account(ACCOUNT)
    assert after == Versioned(
        2, {**new_header, "positions": [position("o2", "2"), position("o3")]}, "s-2"
    )
    assert await store.get_account_head(ACCOUNT) == Versioned(2, new_header, "s-2")
    # a header-only write keeps the rows and their stamp
    await store.commit(ACCOUNT, [Write("account", ACCOUNT, 2, header(document()), RowChanges({}))])
    again = await store.get_account(ACCOUNT)
    assert again == Versioned(
        3, document("o2", "o3") | {"positions": after.data["positions"]}, "s-2"
    )
    # a row removed and put back in one write (a position replaced) is kept
    replaced = RowChanges({"o3": position("o3", "5")}, ["o3"], "s-4")
    await store.commit(ACCOUNT, [Write("account", ACCOUNT, 3, header(document()), replaced)])
    last = await store.get_account(ACCOUNT)
    assert last is not None and last.data["positions"] == [position("o2", "2"), position("o3", "5")]


async def test_a_stale_rows_write_changes_nothing(store: StateStore) -> None:
    whole = await stored(store, "o1")
    await store.commit(ACCOUNT, [Write("account", ACCOUNT, 1, document("o1", "o2"))])
    with pytest.raises(VersionConflict) as caught:
        await store.commit(
            ACCOUNT,
            [Write("account", ACCOUNT, 1, header(document()), RowChanges({}, ["o1"], "s-x"))],
        )
    assert caught.value.fields["actual_version"] == 2
    after = await store.get_account(ACCOUNT)
    assert after is not None and after.data == document("o1", "o2")
    assert after.stamp not in (None, whole.stamp, "s-x")  # a whole write makes a new stamp


async def test_a_rows_write_to_an_account_kept_whole_is_refused(store: StateStore) -> None:
    await store.commit(ACCOUNT, [Write("account", ACCOUNT, 0, {"balance": "1.00"})])
    assert await store.get_account_head(ACCOUNT) == Versioned(1, {"balance": "1.00"})
    with pytest.raises(StoreError):
        await store.commit(
            ACCOUNT,
            [
                Write("order", "o1", 0, {"status": "NEW"}),
                Write("account", ACCOUNT, 1, header(document()), RowChanges({}, ["o1"], "s")),
            ],
        )
    assert await store.get_account(ACCOUNT) == Versioned(1, {"balance": "1.00"})
    assert await store.get_order(ACCOUNT, "o1") is None


async def test_a_whole_write_replaces_every_row(store: StateStore) -> None:
    await stored(store, "o1", "o2")
    await store.commit(ACCOUNT, [Write("account", ACCOUNT, 1, document("o3"))])
    after = await store.get_account(ACCOUNT)
    assert after is not None and after.data == document("o3")
    await store.commit(ACCOUNT, [Write("account", ACCOUNT, 2, {"balance": "2.00"})])
    assert await store.get_account(ACCOUNT) == Versioned(3, {"balance": "2.00"})
    assert await store.get_account_head(ACCOUNT) == Versioned(3, {"balance": "2.00"})


async def test_positions_that_are_not_rows_are_kept_whole(store: StateStore) -> None:
    unsorted = {**document(), "positions": [position("o2"), position("o1")]}
    assert position_rows(unsorted) is None
    await store.commit(ACCOUNT, [Write("account", ACCOUNT, 0, unsorted)])
    assert await store.get_account(ACCOUNT) == Versioned(1, unsorted)
    assert await store.get_account_head(ACCOUNT) == Versioned(1, unsorted)
    no_rows = await stored_empty(store)
    assert no_rows.stamp and no_rows.data["positions"] == []


async def stored_empty(store: StateStore) -> Versioned:
    await store.commit(ACCOUNT, [Write("account", ACCOUNT, 1, document())])
    found = await store.get_account(ACCOUNT)
    assert found is not None
    return found


def test_malformed_rows_writes_are_refused() -> None:
    from execflow.backends.state import check_writes

    good = header(document())
    for bad in (
        [Write("order", "o1", 0, good, RowChanges({}))],
        [Write("account", ACCOUNT, 1, document("o1"), RowChanges({}))],
        [Write("account", ACCOUNT, 1, good, RowChanges({}, ["o1"]))],
        [Write("account", ACCOUNT, 1, good, RowChanges({"o1": position("o2")}, [], "s"))],
        [Write("account", ACCOUNT, 1, good, RowChanges({}, [], ""))],
        [Write("account", ACCOUNT, 1, good, RowChanges({}, read_stamp=""))],
    ):
        with pytest.raises(ValueError):
            check_writes(ACCOUNT, bad)
    check_writes(ACCOUNT, [Write("account", ACCOUNT, 1, good, RowChanges({}))])


def test_stamps_differ_in_this_process_and_in_a_forked_child() -> None:
    import os

    from execflow.backends.state import new_stamp

    seen = {new_stamp() for _ in range(100)}
    assert len(seen) == 100
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports its next stamp and leaves at once
        os.write(write, new_stamp().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    mine = new_stamp()
    assert child not in seen and child.split(".")[0] != mine.split(".")[0]


async def test_a_rows_write_read_at_another_stamp_changes_nothing(store: StateStore) -> None:
    # The same version on another history of the account (a rebuild, or a failover that
    # lost a write): the version matches, the stamp read does not.
    whole = await stored(store, "o1")
    assert whole.stamp is not None
    for rows in (
        RowChanges({"o2": position("o2")}, ["o1"], "s-2", read_stamp="another-history"),
        RowChanges({}, read_stamp="another-history"),  # a header-only write
    ):
        with pytest.raises(VersionConflict):
            await store.commit(
                ACCOUNT,
                [
                    Write("order", "o2", 0, {"status": "OPEN"}),
                    Write("account", ACCOUNT, 1, header(document(balance="1.00")), rows),
                ],
            )
        assert await store.get_account(ACCOUNT) == whole
        assert await store.get_order(ACCOUNT, "o2") is None
    # read at the account's stamp: applied
    changed = RowChanges({"o2": position("o2")}, ["o1"], "s-2", read_stamp=whole.stamp)
    await store.commit(ACCOUNT, [Write("account", ACCOUNT, 1, header(document()), changed)])
    after = await store.get_account(ACCOUNT)
    assert after == Versioned(2, document("o2"), "s-2")
