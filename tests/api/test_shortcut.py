"""The place-order shortcut answers only flawless requests, and hands the rest on intact.

``ApiEdge`` offers ``POST /v1/orders`` to ``PlaceOrderShortcut`` first; here the app
behind it is a recorder, so a request the shortcut hands on is seen exactly as the
client sent it (body replayed), and one it answers never reaches the app.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from execflow.api import keys
from execflow.api.app import create_app
from execflow.api.middleware import ApiEdge
from execflow.api.routes_orders import router
from execflow.api.shortcut import PlaceOrderShortcut
from execflow.metrics import Metrics
from execflow.pipeline.services import Services
from tests.api.conftest import Api, make_app

ORDER = {"account_id": "live:6", "symbol": "EURUSD", "side": "BUY", "qty": "0.10"}


class Recorder:
    """The app behind the middleware: records what reaches it, answers 599."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message: Message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})


@pytest.fixture
def edge(api: Api) -> tuple[httpx.AsyncClient, Recorder]:
    [route] = [r for r in router.routes if getattr(r, "name", None) == "place_order"]
    recorder = Recorder()
    shortcut = PlaceOrderShortcut(api.context, route)
    app = ApiEdge(recorder, 16384, api.context.services.metrics, shortcut)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e"), recorder


async def _post(
    client: httpx.AsyncClient,
    token: str | None,
    body: bytes,
    headers: dict[str, str] | None = None,
    idempotency_key: str | None = "k-1",
) -> httpx.Response:
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if idempotency_key is not None:
        sent["Idempotency-Key"] = idempotency_key
    return await client.post("/v1/orders", content=body, headers=sent)


async def test_a_flawless_order_is_answered_without_the_app(
    api: Api, edge: tuple[httpx.AsyncClient, Recorder]
) -> None:
    client, recorder = edge
    token = await api.key("trade,read")
    placed = await _post(client, token, json.dumps(ORDER).encode())
    assert placed.status_code == 201 and recorder.bodies == []
    order_id = placed.json()["order_id"]
    assert placed.headers["location"] == f"/v1/orders/{order_id}"
    again = await _post(client, token, json.dumps(ORDER).encode())
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == placed.json() and recorder.bodies == []
    # the order is the intake's, read back through the whole app
    read = await api.call("GET", f"/v1/orders/{order_id}", token)
    assert read.status_code == 200 and read.json()["account_id"] == "live:6"


Case = Callable[[str, str], tuple[str | None, bytes, dict[str, str], str | None]]
BODY = orjson.dumps(ORDER)
HANDED_ON: dict[str, Case] = {
    "no key": lambda t, r: (None, BODY, {}, "k"),
    "wrong secret": lambda t, r: (t[:-2] + "xx", BODY, {}, "k"),
    "not a bearer": lambda t, r: (None, BODY, {"Authorization": f"Basic {t}"}, "k"),
    "no trade scope": lambda t, r: (r, BODY, {}, "k"),
    "no idempotency key": lambda t, r: (t, BODY, {}, None),
    "bad idempotency key": lambda t, r: (t, BODY, {}, "has space"),
    "invalid body": lambda t, r: (t, orjson.dumps({**ORDER, "qty": 0.1}), {}, "k"),
    "extra field": lambda t, r: (t, orjson.dumps({**ORDER, "x": 1}), {}, "k"),
    "not JSON": lambda t, r: (t, b"{", {}, "k"),
    "other content type": lambda t, r: (t, BODY, {"Content-Type": "text/plain"}, "k"),
    "an Origin (CORS)": lambda t, r: (t, BODY, {"Origin": "https://desk.example"}, "k"),
}


@pytest.mark.parametrize("case", sorted(HANDED_ON))
async def test_anything_amiss_goes_to_the_app_with_its_body(
    api: Api, edge: tuple[httpx.AsyncClient, Recorder], case: str
) -> None:
    client, recorder = edge
    trader, reader = await api.key("trade"), await api.key("read")
    token, body, headers, idempotency_key = HANDED_ON[case](trader, reader)
    before = len(await api.context.services.state.list_orders("live:6"))
    answer = await _post(client, token, body, headers, idempotency_key)
    assert (answer.status_code, answer.content) == (599, b"app")
    assert recorder.bodies == [body]
    assert len(await api.context.services.state.list_orders("live:6")) == before


async def test_over_its_rate_the_app_answers(
    api: Api, edge: tuple[httpx.AsyncClient, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, recorder = edge
    token = await api.key("trade")
    taken: list[str] = []
    limiter: Any = api.context.limiter

    def take(key_id: str) -> int | None:
        taken.append(key_id)
        return 3

    monkeypatch.setattr(limiter, "take", take)
    answer = await _post(client, token, BODY)
    assert answer.status_code == 599 and recorder.bodies == [BODY] and len(taken) == 1


async def test_the_metrics_name_the_route_either_way(api: Api, services: Services) -> None:
    """Answered by the shortcut or by FastAPI's route: the same route template counted."""
    metrics = Metrics("api")
    app = create_app(make_app(replace(services, metrics=metrics)))
    token = await api.key("trade")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def count(status: str) -> float | None:
        labels = {"method": "POST", "route": "/v1/orders", "status": status}
        return metrics.registry.get_sample_value("execflow_api_requests_total", labels)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        placed = await c.post(
            "/v1/orders", content=BODY, headers={**headers, "Idempotency-Key": "a"}
        )
        bad = orjson.dumps({**ORDER, "qty": "x"})
        refused = await c.post(
            "/v1/orders", content=bad, headers={**headers, "Idempotency-Key": "b"}
        )
    assert (placed.status_code, refused.status_code) == (201, 422)
    assert (count("201"), count("422")) == (1.0, 1.0)


async def test_a_token_handed_on_is_checked_once(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong secret costs one scrypt, not one in the shortcut and another in the route."""
    token = await api.key("trade")
    real = keys._hash
    hashed: list[str] = []

    def counted(secret: str, salt: bytes) -> bytes:
        hashed.append(secret)
        return real(secret, salt)

    monkeypatch.setattr(keys, "_hash", counted)
    wrong = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    denied = await api.call("POST", "/v1/orders", wrong, json=ORDER)
    assert (denied.status_code, denied.json()["code"]) == (401, "unauthorized")
    assert len(hashed) == 1
