"""A worker reads an account kept as rows by its head and writes the rows that changed."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest

from execflow.backends.state import Versioned, Write
from execflow.domain.codec import account_to_dict, position_to_dict
from execflow.pipeline.services import Services
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
