"""Idempotency-Key: one order per key, whatever the retries, races, restarts and instances."""

from __future__ import annotations

import asyncio
from datetime import datetime

import httpx
import pytest

from execflow.api import idempotency
from execflow.api.app import create_app
from execflow.backends.memory_bus import InMemoryBus
from execflow.clock import FakeClock
from execflow.errors import DatabaseError
from execflow.pipeline.services import Services
from tests.api.conftest import Api, make_app

ORDER = {"account_id": "live:6", "symbol": "EURUSD", "side": "BUY", "qty": "0.10"}


async def _orders(services: Services) -> dict[str, object]:
    return dict(await services.state.list_orders("live:6"))


async def _requests(bus: InMemoryBus, services: Services) -> int:
    return await bus.queue_depth(services.queues.provider_requests)


async def test_parallel_duplicates_place_one_order(
    api: Api, services: Services, bus: InMemoryBus
) -> None:
    token = await api.key("trade")
    calls = [api.call("POST", "/v1/orders", token, ORDER, idempotency_key="k-1") for _ in range(8)]
    answers = await asyncio.gather(*calls)
    assert {a.status_code for a in answers} == {201}
    assert len({a.content for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 7
    assert len(await _orders(services)) == 1
    assert await _requests(bus, services) == 1


async def test_two_instances_and_a_restart_change_nothing(
    api: Api, services: Services, bus: InMemoryBus
) -> None:
    token = await api.key("trade")
    # a second instance on the same database (its own intake, verifier and memory)
    other = create_app(make_app(services))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=other), base_url="http://other"
    ) as second:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "k-2"}
        answers = await asyncio.gather(
            *(
                (api.client if i % 2 else second).post("/v1/orders", json=ORDER, headers=headers)
                for i in range(6)
            )
        )
    assert {a.status_code for a in answers} == {201}
    assert len({a.content for a in answers}) == 1
    # "restart": a brand-new app and context, nothing kept in memory
    restarted = create_app(make_app(services))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=restarted), base_url="http://restarted"
    ) as fresh:
        again = await fresh.post("/v1/orders", json=ORDER, headers=headers)
    assert again.status_code == 201 and again.content == answers[0].content
    assert again.headers["idempotent-replayed"] == "true"
    assert len(await _orders(services)) == 1
    assert await _requests(bus, services) == 1


async def test_same_key_other_body_is_refused(api: Api, services: Services) -> None:
    token = await api.key("trade")
    first = await api.call("POST", "/v1/orders", token, ORDER, idempotency_key="k-3")
    assert first.status_code == 201
    other = await api.call(
        "POST", "/v1/orders", token, {**ORDER, "qty": "0.20"}, idempotency_key="k-3"
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert other.headers["content-type"] == "application/problem+json"
    # the same body in another key order is the same body
    same = await api.call(
        "POST", "/v1/orders", token, dict(reversed(ORDER.items())), idempotency_key="k-3"
    )
    assert same.status_code == 201 and same.content == first.content
    assert len(await _orders(services)) == 1


async def test_refusals_are_replayed_and_keys_expire_after_a_day(
    api: Api, services: Services, clock: FakeClock
) -> None:
    token = await api.key("trade")
    big = {**ORDER, "qty": "20.00"}  # 20 lots: more margin than live:6 has
    refused = await api.call("POST", "/v1/orders", token, big, idempotency_key="k-4")
    assert refused.status_code == 422 and refused.json()["code"] == "insufficient_margin"
    replay = await api.call("POST", "/v1/orders", token, big, idempotency_key="k-4")
    assert replay.content == refused.content and replay.headers["idempotent-replayed"] == "true"
    placed = await api.call("POST", "/v1/orders", token, ORDER, idempotency_key="k-5")
    clock.advance(24 * 3600 - 1)
    within = await api.call("POST", "/v1/orders", token, ORDER, idempotency_key="k-5")
    assert within.content == placed.content
    clock.advance(2)
    later = await api.call("POST", "/v1/orders", token, ORDER, idempotency_key="k-5")
    assert later.status_code == 201 and later.json()["order_id"] != placed.json()["order_id"]
    assert len(await _orders(services)) == 2


async def test_expired_claims_are_swept_in_batches_that_no_call_waits_for(
    api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await api.key("trade")
    for n in range(3):
        old = await api.call("POST", "/v1/orders", token, ORDER, idempotency_key=f"old-{n}")
        assert old.status_code == 201
    clock.advance(24 * 3600 + 1)  # past the TTL, and more than an hour since the last sweep
    store = api.context.store
    forget = store.forget_expired
    release, finished = asyncio.Event(), asyncio.Event()
    batches: list[int] = []

    async def held(before: datetime, limit: int) -> int:
        await release.wait()
        deleted = await forget(before, limit)
        batches.append(deleted)
        if deleted < limit:
            finished.set()
        return deleted

    monkeypatch.setattr(idempotency, "_SWEEP_BATCH", 2)
    monkeypatch.setattr(store, "forget_expired", held)
    # the sweep this call started cannot go on: the call answers all the same
    new = await asyncio.wait_for(
        api.call("POST", "/v1/orders", token, ORDER, idempotency_key="new"), 10
    )
    assert new.status_code == 201
    key_id = token.split("_")[1]  # ef_<key_id>_<secret>
    assert await store.get_claim(key_id, "old-0") is not None
    release.set()
    await asyncio.wait_for(finished.wait(), 10)
    assert batches == [2, 1]
    for name in ("old-0", "old-1", "old-2"):
        assert await store.get_claim(key_id, name) is None
    assert await store.get_claim(key_id, "new") is not None


async def test_a_server_starts_when_its_writes_cannot_be_opened_yet(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down() -> None:
        raise DatabaseError("the database is away")

    monkeypatch.setattr(api.context.store, "open_writes", down)
    await api.context.idempotency.prepare()  # logged; the first claim opens them instead
    token = await api.key("trade")
    placed = await api.call("POST", "/v1/orders", token, ORDER)
    assert placed.status_code == 201


async def test_keys_belong_to_their_api_key(api: Api, services: Services) -> None:
    first = await api.key("trade", name="one")
    second = await api.key("trade,read", name="two")
    a = await api.call("POST", "/v1/orders", first, ORDER, idempotency_key="shared")
    b = await api.call("POST", "/v1/orders", second, ORDER, idempotency_key="shared")
    assert a.status_code == b.status_code == 201
    assert a.json()["order_id"] != b.json()["order_id"]


async def test_every_mutating_call_needs_the_header(api: Api) -> None:
    token = await api.key("trade")
    missing = await api.call("POST", "/v1/orders", token, ORDER, idempotency_key=None)
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "header.Idempotency-Key"
    for path in ("/v1/orders/1/cancel", "/v1/orders/1/close"):
        answer = await api.call("POST", path, token, None, idempotency_key=None)
        assert answer.status_code == 422, path
    bad = await api.call("POST", "/v1/orders", token, ORDER, idempotency_key="has space")
    assert bad.status_code == 422
