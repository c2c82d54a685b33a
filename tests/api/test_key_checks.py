"""The key check: scrypt once per key and process, even for a burst of first calls."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from execflow.api import keys
from execflow.api.keys import KeyVerifier, Scope, mint_key
from execflow.backends.api_store import ApiKeyRecord
from execflow.clock import FakeClock
from tests.api.conftest import Api


class _SlowStore:
    """An ``ApiStore`` for keys only, whose look-ups wait until let go."""

    def __init__(self, record: ApiKeyRecord) -> None:
        self.record = record
        self.gate = asyncio.Event()
        self.lookups = 0
        self.asked: asyncio.Queue[str] = asyncio.Queue()

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        self.lookups += 1
        self.asked.put_nowait(key_id)
        record = self.record  # as the database had it when asked
        await self.gate.wait()
        return record if key_id == record.key_id else None


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every scrypt the verifier runs, by secret."""
    seen: list[str] = []
    real = keys._hash

    def counted(secret: str, salt: bytes) -> bytes:
        seen.append(secret)
        return real(secret, salt)

    monkeypatch.setattr(keys, "_hash", counted)
    return seen


async def test_a_burst_of_first_calls_checks_the_key_once(api: Api, hashes: list[str]) -> None:
    token = await api.key("read")
    hashes.clear()  # minting hashed it once
    answers = await asyncio.gather(*(api.call("GET", "/v1/quotes", token) for _ in range(12)))
    assert {a.status_code for a in answers} == {200}
    assert len(hashes) == 1
    wrong = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    denied = await asyncio.gather(*(api.call("GET", "/v1/quotes", wrong) for _ in range(3)))
    assert {a.status_code for a in denied} == {401}
    assert len(hashes) == 2  # the wrong secret: hashed (once for the burst), never cached
    assert (await api.call("GET", "/v1/quotes", token)).status_code == 200
    assert len(hashes) == 2


async def test_a_key_forgotten_while_its_check_runs_is_not_cached(
    clock: FakeClock, hashes: list[str]
) -> None:
    minted = mint_key("desk", [Scope.READ], ["live:6"], clock.now())
    hashes.clear()
    store = _SlowStore(minted.record)
    verifier = KeyVerifier(store, clock, cache_s=5.0)  # type: ignore[arg-type]
    checks: list[Any] = [asyncio.create_task(verifier.verify(minted.token)) for _ in range(3)]
    await store.asked.get()
    verifier.forget(minted.record.key_id)  # revoked here while the check looks the key up
    store.record = replace(minted.record, revoked_at=clock.now())
    later = asyncio.create_task(verifier.verify(minted.token))  # does not join the old check
    await store.asked.get()
    store.gate.set()
    found = await asyncio.gather(*checks)
    assert {k.key_id for k in found if k is not None} == {minted.record.key_id}
    assert await later is None
    assert store.lookups == 2 and len(hashes) == 1
    assert await verifier.verify(minted.token) is None  # nothing cached: looked up again
    assert store.lookups == 3
