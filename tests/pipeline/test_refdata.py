"""Reference data is decoded once per change, and a change is always seen."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from execflow.backends.memory_state import InMemoryStateStore
from execflow.pipeline.refdata import load_prices


async def test_prices_are_decoded_once_per_change() -> None:
    store = InMemoryStateStore()
    services: Any = SimpleNamespace(state=store)
    await store.put_price("EURUSD", {"bid": "1.0850", "ask": "1.0852"})
    first = await load_prices(services)
    assert await load_prices(services) is first
    await store.put_price("EURUSD", {"bid": "1.0851", "ask": "1.0853"})
    changed = await load_prices(services)
    assert changed is not first
    assert changed.get("EURUSD").bid == Decimal("1.0851")  # type: ignore[union-attr]


def test_an_account_is_decoded_again_only_when_its_document_changed() -> None:
    from execflow.domain.codec import account_to_dict
    from execflow.domain.models import Account
    from execflow.pipeline.refdata import account_of, remember_account

    account = Account("live:77", "USD", Decimal("100.00"), Decimal(100), "g", version=3)
    written = account_to_dict(account)
    remember_account(written, account)
    assert account_of("live:77", dict(written)) is account
    changed = {**written, "balance": "90.00", "version": 4}
    decoded = account_of("live:77", changed)
    assert decoded is not account and decoded.balance == Decimal("90.00")
