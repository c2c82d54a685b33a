"""Reference data is decoded once per change, a change is always seen, and each
``Services`` owns its memo (``pipeline.decoded``)."""

from __future__ import annotations

import gc
import weakref
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from execflow.backends.memory_state import InMemoryStateStore
from execflow.backends.state import Versioned, header_of
from execflow.domain.accounting import add_position, reserve
from execflow.domain.codec import account_to_dict, instrument_to_dict
from execflow.domain.enums import Side
from execflow.domain.models import Account, Position
from execflow.domain.positionbook import book_of
from execflow.pipeline.decoded import DecodedMemo, DecodedRefdata, TokenCache
from execflow.pipeline.refdata import MissingReferenceData, load_instrument, load_prices
from execflow.pipeline.services import Services
from tests.domain.factories import INSTRUMENTS


def _account(balance: str = "100.00", version: int = 3) -> Account:
    return Account("live:77", "USD", Decimal(balance), Decimal(100), "g", version=version)


async def test_prices_are_decoded_once_per_change(services: Services) -> None:
    store = services.state
    await store.put_price("EURUSD", {"bid": "1.0850", "ask": "1.0852"})
    first = await load_prices(services)
    assert await load_prices(services) is first
    await store.put_price("EURUSD", {"bid": "1.0851", "ask": "1.0853"})
    changed = await load_prices(services)
    assert changed is not first
    assert changed.get("EURUSD").bid == Decimal("1.0851")  # type: ignore[union-attr]


async def test_an_instrument_is_decoded_again_only_when_its_config_changed(
    services: Services,
) -> None:
    instrument = next(iter(INSTRUMENTS.values()))
    group, symbol = instrument.group, instrument.symbol
    data = instrument_to_dict(instrument)
    await services.state.put_instrument(group, symbol, data)
    first = await load_instrument(services, group, symbol)
    assert await load_instrument(services, group, symbol) is first
    await services.state.put_instrument(group, symbol, {**data, "max_lots": "50"})
    changed = await load_instrument(services, group, symbol)
    assert changed is not first and changed.max_lots == Decimal(50)


class CountingStore(InMemoryStateStore):
    """Counts the instrument configs read from the store."""

    def __init__(self) -> None:
        super().__init__()
        self.instrument_reads = 0

    async def get_instrument(self, group: str, symbol: str) -> dict[str, Any] | None:
        self.instrument_reads += 1
        return await super().get_instrument(group, symbol)


async def _token(store: InMemoryStateStore) -> str | None:
    return (await store.read_for_transition("live:1", "o1")).instruments_token


async def test_an_instrument_config_is_read_once_per_token(services: Services) -> None:
    store = CountingStore()
    services = replace(services, state=store, decoded=DecodedRefdata())
    instrument = next(iter(INSTRUMENTS.values()))
    group, symbol = instrument.group, instrument.symbol
    data = instrument_to_dict(instrument)
    await store.put_instrument(group, symbol, data)
    token = await _token(store)
    first = await load_instrument(services, group, symbol, token)
    assert await load_instrument(services, group, symbol, token) is first
    assert store.instrument_reads == 1
    # a change replaces the token: the next transition reads the new config
    await store.put_instrument(group, symbol, {**data, "max_lots": "50"})
    changed = await load_instrument(services, group, symbol, await _token(store))
    assert changed.max_lots == Decimal(50) and store.instrument_reads == 2
    # the old token (a transition that read before the change) finds nothing kept
    assert (await load_instrument(services, group, symbol, token)).max_lots == Decimal(50)
    assert store.instrument_reads == 3


async def test_without_a_token_every_load_reads_the_store(services: Services) -> None:
    store = CountingStore()
    services = replace(services, state=store, decoded=DecodedRefdata())
    instrument = next(iter(INSTRUMENTS.values()))
    await store.put_instrument(instrument.group, instrument.symbol, instrument_to_dict(instrument))
    for _ in range(3):
        await load_instrument(services, instrument.group, instrument.symbol, None)
    assert store.instrument_reads == 3


async def test_a_store_that_lost_its_configs_is_not_answered_from_the_cache(
    services: Services,
) -> None:
    store = services.state
    instrument = next(iter(INSTRUMENTS.values()))
    group, symbol = instrument.group, instrument.symbol
    await store.put_instrument(group, symbol, instrument_to_dict(instrument))
    await load_instrument(
        services, group, symbol, (await store.read_for_transition("a", "o")).instruments_token
    )
    await store.flush_all()
    lost = (await store.read_for_transition("a", "o")).instruments_token
    assert lost is None
    with pytest.raises(MissingReferenceData):
        await load_instrument(services, group, symbol, lost)
    # seeded again with another symbol only: still missing, and retryable
    other = next(i for i in INSTRUMENTS.values() if i.symbol != symbol)
    await store.put_instrument(other.group, other.symbol, instrument_to_dict(other))
    reseeded = (await store.read_for_transition("a", "o")).instruments_token
    with pytest.raises(MissingReferenceData):
        await load_instrument(services, group, symbol, reseeded)


def test_a_token_cache_keeps_values_for_their_token_only() -> None:
    cache: TokenCache[str] = TokenCache(max_keys=2)
    cache.put(None, "k", "never kept")
    assert cache.get(None, "k") is None and len(cache) == 0
    cache.put("t1", "a", "A1")
    cache.put("t1", "b", "B1")
    assert (cache.get("t1", "a"), cache.get("t1", "b")) == ("A1", "B1")
    cache.put("t1", "c", "C1")  # full: starts over with c alone
    assert (cache.get("t1", "a"), cache.get("t1", "c"), len(cache)) == (None, "C1", 1)
    assert cache.get("t2", "c") is None  # another token drops everything
    assert len(cache) == 0 and cache.get("t1", "c") is None
    cache.put("t2", "a", "A2")
    assert cache.get("t2", "a") == "A2"


def test_an_account_is_decoded_again_only_when_its_document_changed() -> None:
    decoded = DecodedRefdata()
    account = _account()
    written = account_to_dict(account)
    decoded.remember_account(written, account)
    assert decoded.account("live:77", dict(written)) is account
    changed = {**written, "balance": "90.00", "version": 4}
    again = decoded.account("live:77", changed)
    assert again is not account and again.balance == Decimal("90.00")
    assert decoded.account("live:77", dict(changed)) is again


async def test_two_services_do_not_share_memo_entries(services: Services) -> None:
    account = _account()
    written = account_to_dict(account)
    services.decoded.remember_account(written, account)
    other = replace(services, state=InMemoryStateStore(), decoded=DecodedRefdata())
    # the other services decode for themselves: they never see the first one's entry
    theirs = other.decoded.account("live:77", dict(written))
    assert theirs == account and theirs is not account
    assert services.decoded.account("live:77", dict(written)) is account
    # a Services built without one gets its own memo, not a process-global one
    fresh = Services(
        settings=services.settings,
        bus=services.bus,
        state=services.state,
        database=services.database,
        logs=services.logs,
        clock=services.clock,
        ids=services.ids,
        queues=services.queues,
    )
    assert fresh.decoded is not services.decoded
    assert fresh.decoded.account("live:77", dict(written)) is not account


def test_the_memo_starts_over_when_full() -> None:
    memo: DecodedMemo[str] = DecodedMemo(max_keys=2)
    calls: list[int] = []

    def decode(stored: int) -> str:
        calls.append(stored)
        return str(stored)

    assert [memo.get(k, k, decode) for k in (1, 2, 1)] == ["1", "2", "1"]
    assert calls == [1, 2]
    memo.get(3, 3, decode)  # full: starts over with 3 alone
    assert len(memo) == 1
    memo.get(1, 1, decode)
    assert calls == [1, 2, 3, 1]


def test_an_account_whose_positions_did_not_change_keeps_its_positions_tuple() -> None:
    decoded = DecodedRefdata()
    base = Account("live:6", "USD", Decimal(100000), Decimal(100), "standard")
    held = add_position(base, Position("o1", "EURUSD", Side.BUY, Decimal("0.1"), Decimal(1085)))
    first = decoded.account("live:6", account_to_dict(held))
    # another process reserved for an order: header and reservations changed, not positions
    reserved = reserve(first, "o2", Decimal(50))
    again = decoded.account("live:6", account_to_dict(reserved))
    assert again == reserved
    assert again.positions is first.positions
    # positions that changed are decoded afresh
    moved = add_position(reserved, Position("o2", "EURUSD", Side.SELL, Decimal("0.2"), Decimal(9)))
    third = decoded.account("live:6", account_to_dict(moved))
    assert third == moved and third.positions is not first.positions


class _Document(dict[str, Any]):
    """A stored document that can be watched for being let go (plain dicts cannot)."""


def test_a_whole_read_of_an_account_kept_as_rows_keeps_its_positions_not_its_document() -> None:
    decoded = DecodedRefdata()
    base = Account("live:6", "USD", Decimal(100000), Decimal(100), "standard")
    held = base
    for n in range(3):
        opened = Position(f"o{n}", "EURUSD", Side.BUY, Decimal("0.1"), Decimal(1085))
        held = add_position(held, opened)
    whole = _Document(account_to_dict(held))
    document = weakref.ref(whole)
    account = decoded.whole_account("live:6", Versioned(4, whole, "s1"))
    assert account == held
    assert book_of(account.positions) is not None  # the next open writes one row
    head = Versioned(4, header_of(account_to_dict(held)), "s1")
    assert decoded.account_of_head("live:6", head) == held
    del whole
    gc.collect()
    assert document() is None  # read by its head from now on: the document is not kept
