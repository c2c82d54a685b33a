"""A worker reads an account kept as rows by its head and writes the rows that changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

import pytest

from execflow.backends.memory_state import InMemoryStateStore
from execflow.backends.state import RowChanges, Versioned, Write
from execflow.domain.accounting import add_position, close_position
from execflow.domain.codec import account_header_document, account_to_dict, position_to_dict
from execflow.domain.enums import Side
from execflow.domain.models import Account, Position
from execflow.pipeline.account_io import account_write, read_account
from execflow.pipeline.decoded import DecodedRefdata
from execflow.pipeline.services import Services
from tests.domain.factories import account
from tests.pipeline.conftest import Book, Pipeline

D = Decimal


async def test_a_fill_reads_the_head_and_writes_the_header_and_one_row(
    services: Services, book: Book, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = services.state
    await book.submit("o1")
    await book.submit("o2")
    account_writes: list[Write] = []
    whole_reads: list[str] = []
    commit, get_account = state.commit, state.get_account

    async def recording_commit(account_id: str, writes: Sequence[Write]) -> None:
        account_writes.extend(w for w in writes if w.kind == "account")
        await commit(account_id, writes)

    async def counting_get_account(account_id: str) -> Versioned | None:
        whole_reads.append(account_id)
        return await get_account(account_id)

    monkeypatch.setattr(state, "commit", recording_commit)
    monkeypatch.setattr(state, "get_account", counting_get_account)

    # the worker never saw this account's rows (the book wrote it whole): one whole read
    await pipeline.fill("o1-open", "X1")
    assert whole_reads == ["live:6"]
    # now it knows them: the head only, and the header plus the new position's row
    await pipeline.fill("o2-open", "X2")
    assert whole_reads == ["live:6"]
    first, second = account_writes
    for write in (first, second):
        assert write.rows is not None and write.data["positions"] == []
        assert write.rows.removed == [] and write.rows.stamp
    assert first.rows is not None and second.rows is not None
    assert list(first.rows.put) == ["o1"] and list(second.rows.put) == ["o2"]

    monkeypatch.undo()
    whole = await state.get_account("live:6")
    assert whole is not None and whole.stamp == second.rows.stamp
    account = await book.account()
    assert whole.data == account_to_dict(account)
    assert [position_to_dict(p) for p in account.positions] == [
        first.rows.put["o1"],
        second.rows.put["o2"],
    ]
    # hedged rule: the two BUYs of 0.5 lot book 1 lot's margin (as the whole-account tests)
    assert account.used_margin_executed == D("1085.03")
    assert account.reservations == ()


def _position(order_id: str) -> Position:
    return Position(order_id, "EURUSD", Side.BUY, D("0.5"), D("1085.03"))


def test_an_open_and_a_close_write_one_row_and_anything_else_the_whole_account() -> None:
    start = add_position(add_position(account(), _position("o1")), _position("o3"))
    read = Versioned(4, account_header_document(start), "s0")
    opened = add_position(start, _position("o2"))
    planned = account_write(read, start, opened)
    assert planned.write.rows is not None
    assert planned.write.rows.put == {"o2": position_to_dict(_position("o2"))}
    assert planned.write.rows.removed == []
    assert planned.write.data == account_header_document(opened)
    assert planned.stamp == planned.write.rows.stamp != "s0"

    closed = close_position(opened, "o1", D("-3.20"))
    planned = account_write(Versioned(5, read.data, "s1"), opened, closed)
    assert planned.write.rows is not None
    assert planned.write.rows.put == {} and planned.write.rows.removed == ["o1"]

    same = replace(closed, balance=D(1))  # the header only: the stamp is kept
    planned = account_write(Versioned(6, read.data, "s2"), closed, same)
    assert planned.write.rows is not None and planned.write.rows.stamp is None
    assert planned.stamp == "s2"

    # not one edit of the positions read, or an account read without a stamp: whole
    two_edits = add_position(opened, _position("o4"))
    for read_as, before in ((Versioned(5, read.data, "s1"), start), (Versioned(5, {}), opened)):
        planned = account_write(read_as, before, two_edits)
        assert planned.write.rows is None and planned.stamp is None
        assert planned.write.data == account_to_dict(two_edits)


async def _read(
    decoded: DecodedRefdata, state: InMemoryStateStore, whole_reads: list[str]
) -> tuple[Account, Versioned]:
    """A worker's read of ``live:6`` (head, and the whole account when its rows are unknown)."""

    async def whole() -> Versioned:
        whole_reads.append("whole")
        found = await state.get_account("live:6")
        assert found is not None
        return found

    head = await state.get_account_head("live:6")
    assert head is not None
    return await read_account(decoded, "live:6", head, whole)


async def _write(
    decoded: DecodedRefdata,
    state: InMemoryStateStore,
    read: Versioned,
    before: Account,
    after: Account,
) -> RowChanges | None:
    planned = account_write(read, before, after)
    await state.commit("live:6", [planned.write])
    planned.remember(decoded)
    return planned.write.rows


async def test_a_process_never_reuses_rows_another_process_or_a_whole_write_replaced() -> None:
    state = InMemoryStateStore()
    start = add_position(account(), _position("o1"))
    await state.commit("live:6", [Write("account", "live:6", 0, account_to_dict(start))])
    first, second = DecodedRefdata(), DecodedRefdata()  # two processes
    reads: list[str] = []

    # the first opens o2, then o3: one whole read (it never saw the rows), and both
    # writes are rows only (the whole read gave the positions their book and stamp)
    acc, read = await _read(first, state, reads)
    rows = await _write(first, state, read, acc, add_position(acc, _position("o2")))
    assert rows is not None and list(rows.put) == ["o2"]
    acc, read = await _read(first, state, reads)
    rows = await _write(first, state, read, acc, add_position(acc, _position("o3")))
    assert rows is not None and list(rows.put) == ["o3"] and reads == ["whole"]
    # the second closes o1: the rows the first knows are of an older stamp, read whole
    acc, read = await _read(second, state, reads)
    await _write(second, state, read, acc, close_position(acc, "o1", D("-3.20")))
    acc, read = await _read(first, state, reads)
    assert reads == ["whole"] * 3 and [p.order_id for p in acc.positions] == ["o2", "o3"]
    assert acc.balance == start.balance - D("3.20")
    # a header-only write keeps the stamp: the writer reuses its rows with the new header
    header_only = await _write(first, state, read, acc, replace(acc, balance=D(7)))
    assert header_only == RowChanges({}, read_stamp=read.stamp)
    acc, read = await _read(first, state, reads)
    assert reads == ["whole"] * 3
    assert acc.balance == D(7) and [p.order_id for p in acc.positions] == ["o2", "o3"]
    # the store lost and rebuilt (an older account, the same version): a new stamp
    await state.flush_all()
    for version in range(read.version):
        await state.commit("live:6", [Write("account", "live:6", version, account_to_dict(start))])
    for decoded in (first, second):
        acc, again = await _read(decoded, state, reads)
        assert again.version == read.version and [p.order_id for p in acc.positions] == ["o1"]
    assert reads == ["whole"] * 5
