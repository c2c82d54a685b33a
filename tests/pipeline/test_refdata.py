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
