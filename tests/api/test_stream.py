"""The live stream: one account through open, SL set, partial fill and close, followed over
real HTTP; dropped mid-way and resumed with Last-Event-ID: every event once, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from execflow.api.server import ApiServer
from execflow.domain.enums import RequestKind
from execflow.pipeline.services import Services
from tests.api.conftest import Api, make_app
from tests.api.sse import SseClient
from tests.pipeline.flow import ASK, BID, SL, Flow


@pytest.fixture
async def http(services: Services, api: Api) -> AsyncIterator[httpx.AsyncClient]:
    """The app under uvicorn on a free port; streams wake only through the event feed."""
    quiet = replace(
        services,
        settings=services.settings.model_copy(
            update={"api_stream_recheck_s": 300.0, "shutdown_timeout_s": 1.0}
        ),
    )
    server = ApiServer(make_app(quiet), port=0)
    await server.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server.port}", timeout=10
        ) as client:
            yield client
    finally:
        await server.stop()


async def test_a_client_follows_an_account_drops_and_resumes_without_gap(
    services: Services, api: Api, http: httpx.AsyncClient
) -> None:
    token = await api.key("read,trade")
    auth = {"Authorization": f"Bearer {token}"}
    async with Flow.running(services) as flow:
        first = SseClient(http, token)
        first.start()
        await first.wait_ready()
        assert first.messages[0]["id"] == "live:6=0"
        placed = await http.post(
            "/v1/orders",
            json={"account_id": "live:6", "symbol": "EURUSD", "side": "BUY", "qty": "1.00"},
            headers={**auth, "Idempotency-Key": "open"},
        )
        order_id = placed.json()["order_id"]
        await flow.settle()
        await flow.report(order_id, "PARTIALLY_FILLED", qty="0.40", px=ASK)
        await flow.report(order_id, "EXECUTED", qty="1.00", px=ASK)
        await first.wait_for("ORDER_OPENED")
        set_sl = await http.put(
            f"/v1/orders/{order_id}/sl",
            json={"price": SL},
            headers={**auth, "Idempotency-Key": "sl"},
        )
        assert set_sl.status_code == 202, set_sl.text
        await flow.settle()
        place_sl = flow.request(RequestKind.PLACE_SL, order_id)
        await flow.report(place_sl["lifecycle_id"], "PENDING", level=place_sl["stop_px"])
        await first.wait_for("LEG_ACTIVE")
        resume_from = await first.drop()
        # while the client is away: the position is closed
        closing = await http.post(
            f"/v1/orders/{order_id}/close", headers={**auth, "Idempotency-Key": "close"}
        )
        assert closing.status_code == 202, closing.text
        await flow.settle()
        close = flow.request(RequestKind.CLOSE, order_id)
        await flow.report(close["lifecycle_id"], "EXECUTED", qty="1.00", px=BID)
        await flow.settle()
        second = SseClient(http, token, last_event_id=resume_from)
        second.start()
        await second.wait_for("ORDER_CLOSED")
        await flow.settle()
        stored = [e async for e in services.database.iter_chain("live:6")]
        await second.wait_for(stored[-1].kind)
        await second.drop()
    seen = first.events() + second.events()
    assert [m["data"]["event_id"] for m in seen] == [e.event_id for e in stored]
    assert [m["data"]["chain_seq"] for m in seen] == list(range(1, len(stored) + 1))
    kinds = [m["data"]["kind"] for m in seen]
    expected = [
        "ORDER_SUBMITTED",
        "ORDER_PARTIALLY_FILLED",
        "ORDER_OPENED",
        "LEG_REQUESTED",
        "LEG_ACTIVE",
        "CLOSE_REQUESTED",
        "ORDER_CLOSED",
    ]
    assert [k for k in kinds if k in expected] == expected
    assert len(first.events()) == kinds.index("CLOSE_REQUESTED")  # the split fell at the drop
    closed = next(m for m in seen if m["data"]["kind"] == "ORDER_CLOSED")["data"]
    assert closed["order"]["status"] == "CLOSED" and closed["account"]["balance"]
    assert closed["status"] == "CLOSED"
