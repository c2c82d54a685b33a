"""Operator endpoints: the DLQ listed and replayed, a stuck order listed and resolved."""

from __future__ import annotations

from decimal import Decimal

from execflow.pipeline.services import Services
from tests.api.conftest import Api
from tests.pipeline.flow import ASK, Flow


async def test_dead_letters_are_listed_and_replayed(api: Api, services: Services) -> None:
    admin = await api.key("admin", "*")
    async with Flow.running(services) as flow:
        await flow.report("nowhere", "EXECUTED", qty="1.00", px=ASK)  # answers no request
        listed = await api.call("GET", "/v1/admin/dlq", admin)
        assert listed.status_code == 200, listed.text
        [letter] = listed.json()
        assert letter["reason"] == "unknown_lifecycle_id" and letter["replayed_at"] is None
        planned = await api.call("POST", "/v1/admin/dlq/replay", admin, {"dry_run": True})
        assert planned.json()["replayed"] == 0 and len(planned.json()["selected"]) == 1
        done = await api.call("POST", "/v1/admin/dlq/replay", admin, {"reason": letter["reason"]})
        assert done.status_code == 200 and done.json()["replayed"] == 1
        await flow.settle()  # replayed, dead-lettered again: the id is still unknown
        again = await api.call("GET", "/v1/admin/dlq?include_replayed=true", admin)
    assert [d["replayed_at"] is not None for d in again.json()] == [True, False]


async def test_a_stuck_order_is_listed_and_resolved_with_who_and_why(
    api: Api, services: Services
) -> None:
    admin = await api.key("admin,read", "live:6", name="desk")
    async with Flow.running(services) as flow:
        waiting = await flow.open_request()  # the LP never answers
        before = await flow.account()
        stuck = await api.call("GET", "/v1/admin/stuck?older_than_s=0", admin)
        assert [s["order_id"] for s in stuck.json()] == [waiting.order_id]
        assert stuck.json()[0]["waiting_for"] == ["OPEN"]
        body = {"as": "rejected", "reason": "LP confirmed it never received it"}
        path = f"/v1/admin/orders/{waiting.order_id}/resolve"
        resolved = await api.call("POST", path, admin, body)
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["status"] == "REJECTED"
        key_id = admin.split("_")[1]
        assert resolved.json()["operator"] == f"api:desk:{key_id}"
        await flow.settle()
        again = await api.call("POST", path, admin, body)
        assert again.status_code == 409
        after = await flow.account()
        events = await flow.events(waiting.order_id)
    assert before.used_margin_all > Decimal(0) and after.used_margin_all == Decimal(0)
    operator = events[-1].payload["operator"]
    assert operator == {
        "name": f"api:desk:{key_id}",
        "reason": "LP confirmed it never received it",
        "resolution": "rejected",
    }


async def test_stream_authorization(api: Api) -> None:
    reader = await api.key("read", "live:6")
    trader = await api.key("trade", "live:6")
    everywhere = await api.key("read", "*")

    async def status(token: str | None, query: str = "") -> int:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return (await api.client.get(f"/v1/stream{query}", headers=headers)).status_code

    assert await status(None) == 401
    assert await status("ef_nope_nope") == 401
    assert await status(trader) == 403
    assert await status(reader, "?account_id=live:7") == 404
    assert await status(everywhere) == 422  # a key on every account names its accounts
    bad = await api.client.get(
        "/v1/stream",
        headers={"Authorization": f"Bearer {reader}", "Last-Event-ID": "garbage"},
    )
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_last_event_id"
