"""The state store contract, run against InMemoryStateStore and RedisStateStore."""

from __future__ import annotations

import asyncio

import pytest

from execflow.backends.state import StateStore, TransitionReads, Versioned, Write
from execflow.errors import VersionConflict

ACCOUNT = "live:6"


async def open_order(store: StateStore, order_id: str = "o1") -> None:
    await store.commit(
        ACCOUNT,
        [
            Write("account", ACCOUNT, 0, {"balance": "1000.00"}),
            Write("order", order_id, 0, {"status": "QUEUED", "applied": []}),
        ],
    )


async def test_first_commit_creates_version_one(store: StateStore) -> None:
    assert await store.get_account(ACCOUNT) is None
    assert await store.get_order(ACCOUNT, "o1") is None
    await open_order(store)
    assert await store.get_account(ACCOUNT) == Versioned(1, {"balance": "1000.00"})
    assert await store.get_order(ACCOUNT, "o1") == Versioned(1, {"status": "QUEUED", "applied": []})
    assert await store.list_accounts() == [ACCOUNT]
    assert await store.list_orders(ACCOUNT) == {
        "o1": Versioned(1, {"status": "QUEUED", "applied": []})
    }


async def test_list_orders_leaves_out_the_skipped_ones(store: StateStore) -> None:
    await open_order(store)
    await store.commit(ACCOUNT, [Write("order", "o2", 0, {"status": "CLOSED"})])
    assert set(await store.list_orders(ACCOUNT)) == {"o1", "o2"}
    assert await store.list_orders(ACCOUNT, skip={"o2"}) == {
        "o1": Versioned(1, {"status": "QUEUED", "applied": []})
    }
    assert await store.list_orders(ACCOUNT, skip=("o1", "o2", "o9")) == {}


async def test_read_for_transition_is_the_three_single_reads(store: StateStore) -> None:
    assert await store.read_for_transition(ACCOUNT, "o1") == TransitionReads(None, None, {})
    await open_order(store)
    await store.put_price("EURUSD", {"bid": "1.0850", "ask": "1.0852"})
    reads = await store.read_for_transition(ACCOUNT, "o1")
    assert reads.order == await store.get_order(ACCOUNT, "o1")
    assert reads.account == await store.get_account(ACCOUNT)
    assert (
        reads.prices == await store.get_prices() == {"EURUSD": {"bid": "1.0850", "ask": "1.0852"}}
    )
    missing = await store.read_for_transition(ACCOUNT, "o2")
    assert missing.order is None and missing.account == reads.account


async def test_commit_bumps_versions_and_keeps_ledger_and_outbox(store: StateStore) -> None:
    await open_order(store)
    await store.commit(
        ACCOUNT,
        [
            Write("order", "o1", 1, {"status": "OPEN", "applied": ["e1"], "outbox": ["PLACE_SL"]}),
            Write("account", ACCOUNT, 1, {"balance": "990.00"}),
        ],
    )
    order = await store.get_order(ACCOUNT, "o1")
    assert order == Versioned(2, {"status": "OPEN", "applied": ["e1"], "outbox": ["PLACE_SL"]})
    account = await store.get_account(ACCOUNT)
    assert account is not None and account.version == 2


async def test_a_stale_write_fails_and_nothing_is_written(store: StateStore) -> None:
    await open_order(store)
    await store.commit(ACCOUNT, [Write("order", "o1", 1, {"status": "OPEN"})])
    with pytest.raises(VersionConflict) as caught:
        await store.commit(
            ACCOUNT,
            [
                Write("account", ACCOUNT, 1, {"balance": "0.00"}),  # still current
                Write("order", "o2", 0, {"status": "NEW"}),  # new, fine alone
                Write("order", "o1", 1, {"status": "CLOSED"}),  # stale
            ],
        )
    assert caught.value.fields["key"] == "o1"
    assert caught.value.fields["actual_version"] == 2
    assert await store.get_account(ACCOUNT) == Versioned(1, {"balance": "1000.00"})
    assert await store.get_order(ACCOUNT, "o2") is None
    assert set(await store.list_orders(ACCOUNT)) == {"o1"}


async def test_expected_zero_means_must_not_exist(store: StateStore) -> None:
    await open_order(store)
    with pytest.raises(VersionConflict):
        await store.commit(ACCOUNT, [Write("order", "o1", 0, {"status": "DUPLICATE"})])


async def test_malformed_commits_are_refused(store: StateStore) -> None:
    with pytest.raises(ValueError):
        await store.commit(ACCOUNT, [])
    with pytest.raises(ValueError):
        await store.commit(ACCOUNT, [Write("account", "demo:1", 0, {})])
    with pytest.raises(ValueError):
        await store.commit(ACCOUNT, [Write("order", "o", 0, {}), Write("order", "o", 0, {})])


async def test_concurrent_compare_and_set_exactly_one_wins_each_round(store: StateStore) -> None:
    await open_order(store)
    for _ in range(5):
        current = await store.get_order(ACCOUNT, "o1")
        assert current is not None
        start = asyncio.Event()

        async def attempt(
            n: int, version: int = current.version, start: asyncio.Event = start
        ) -> bool:
            await start.wait()
            try:
                await store.commit(ACCOUNT, [Write("order", "o1", version, {"winner": n})])
            except VersionConflict:
                return False
            return True

        tasks = [asyncio.create_task(attempt(n)) for n in range(25)]
        start.set()
        results = await asyncio.gather(*tasks)
        assert results.count(True) == 1
        after = await store.get_order(ACCOUNT, "o1")
        assert after is not None
        assert after.version == current.version + 1
        assert after.data["winner"] == results.index(True)


async def test_concurrent_increments_lose_no_update(store: StateStore) -> None:
    await store.commit(ACCOUNT, [Write("account", ACCOUNT, 0, {"counter": 0})])

    async def increment(times: int) -> None:
        for _ in range(times):
            while True:
                doc = await store.get_account(ACCOUNT)
                assert doc is not None
                new = {"counter": doc.data["counter"] + 1}
                try:
                    await store.commit(ACCOUNT, [Write("account", ACCOUNT, doc.version, new)])
                    break
                except VersionConflict:
                    continue

    await asyncio.gather(*(increment(10) for _ in range(20)))
    final = await store.get_account(ACCOUNT)
    assert final == Versioned(201, {"counter": 200})


async def test_accounts_are_isolated(store: StateStore) -> None:
    await open_order(store)
    await store.commit("demo:12", [Write("order", "o1", 0, {"status": "OTHER"})])
    mine = await store.get_order(ACCOUNT, "o1")
    theirs = await store.get_order("demo:12", "o1")
    assert mine is not None and theirs is not None
    assert mine.data["status"] == "QUEUED"
    assert theirs.data["status"] == "OTHER"
    assert await store.list_accounts() == [ACCOUNT]  # demo:12 has orders but no account doc


async def test_lifecycle_index_is_set_if_absent(store: StateStore) -> None:
    record = {"account_id": ACCOUNT, "order_id": "o1", "kind": "OPEN"}
    assert await store.put_lifecycle("lc-1", record) is True
    assert await store.put_lifecycle("lc-1", {"kind": "CLOSE"}) is False
    assert await store.get_lifecycle("lc-1") == record
    assert await store.get_lifecycle("lc-unknown") is None


async def test_reference_data(store: StateStore) -> None:
    config = {"contract_size": "100000", "commission_rate": "7"}
    await store.put_instrument("standard", "EURUSD", config)
    assert await store.get_instrument("standard", "EURUSD") == config
    assert await store.get_instrument("vip", "EURUSD") is None
    await store.put_price("EURUSD", {"bid": "1.1000", "ask": "1.1002"})
    await store.put_price("USDJPY", {"bid": "150.00", "ask": "150.02"})
    await store.put_price("EURUSD", {"bid": "1.1001", "ask": "1.1003"})
    assert await store.get_price("EURUSD") == {"bid": "1.1001", "ask": "1.1003"}
    assert await store.get_price("GBPUSD") is None
    assert set(await store.get_prices()) == {"EURUSD", "USDJPY"}


async def test_every_instrument_config_written_replaces_the_token(store: StateStore) -> None:
    assert (await store.read_for_transition(ACCOUNT, "o1")).instruments_token is None
    await store.put_instrument("standard", "EURUSD", {"c": 1})
    first = (await store.read_for_transition(ACCOUNT, "o1")).instruments_token
    assert first is not None
    assert (await store.read_for_transition(ACCOUNT, "o1")).instruments_token == first
    await store.put_price("EURUSD", {"bid": "1.1", "ask": "1.2"})  # not a config: kept
    assert (await store.read_for_transition(ACCOUNT, "o1")).instruments_token == first
    await store.put_instrument("standard", "EURUSD", {"c": 1})  # the same config again
    second = (await store.read_for_transition(ACCOUNT, "o1")).instruments_token
    assert second not in (None, first)
    await store.flush_all()  # the store lost its data: no token to trust
    assert (await store.read_for_transition(ACCOUNT, "o1")).instruments_token is None
    await store.put_instrument("standard", "EURUSD", {"c": 1})  # seeded again: a new one
    assert (await store.read_for_transition(ACCOUNT, "o1")).instruments_token not in (
        None,
        first,
        second,
    )


async def test_returned_documents_are_copies(store: StateStore) -> None:
    await open_order(store)
    first = await store.get_order(ACCOUNT, "o1")
    assert first is not None
    first.data["status"] = "MUTATED"
    again = await store.get_order(ACCOUNT, "o1")
    assert again is not None and again.data["status"] == "QUEUED"


async def test_flush_all_forgets_everything(store: StateStore) -> None:
    await open_order(store)
    await store.put_lifecycle("lc-1", {"kind": "OPEN"})
    await store.put_price("EURUSD", {"bid": "1"})
    await store.put_instrument("g", "EURUSD", {"x": 1})
    await store.flush_all()
    assert await store.list_accounts() == []
    assert await store.list_orders(ACCOUNT) == {}
    assert await store.get_lifecycle("lc-1") is None
    assert await store.get_prices() == {}
    assert await store.get_instrument("g", "EURUSD") is None
    await store.ping()
