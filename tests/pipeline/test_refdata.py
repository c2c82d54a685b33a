"""Reference data is decoded once per change, a change is always seen, and each
``Services`` owns its memo (``pipeline.decoded``)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from execflow.backends.memory_state import InMemoryStateStore
from execflow.domain.accounting import add_position, reserve
from execflow.domain.codec import account_to_dict, instrument_to_dict
from execflow.domain.enums import Side
from execflow.domain.models import Account, Position
from execflow.pipeline.decoded import DecodedMemo, DecodedRefdata
from execflow.pipeline.refdata import load_instrument, load_prices
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
