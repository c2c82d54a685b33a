"""The platform API's behaviour: reads, problems, limits, CORS, logs without secrets, keys."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from execflow.api.app import create_app
from execflow.cli.app import app as cli_app
from execflow.clock import FakeClock
from execflow.logs import LogSystem
from execflow.pipeline.services import Services
from execflow.settings import Settings
from tests.api.conftest import Api, make_app
from tests.pipeline.flow import Flow

ORDER = {"account_id": "live:6", "symbol": "EURUSD", "side": "BUY", "qty": "0.10"}


async def test_account_shows_positions_at_live_quotes(api: Api, services: Services) -> None:
    token = await api.key("read")
    async with Flow.running(services) as flow:
        opened = await flow.opened()  # BUY 1.00 EURUSD filled at 1.08502 (+ hs 0.00006)
        answer = await api.call("GET", "/v1/accounts/live:6", token)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    [position] = body["positions"]
    assert position["order_id"] == opened.order_id
    assert position["open_price"] == "1.08508"
    assert position["market_price"] == "1.08494"  # LP bid 1.08500 - hs: where it closes now
    assert position["floating_profit"] == "-14.00"  # -0.00014 x 1 lot x 100000
    assert body["balance"] == "10000.00" and body["used_margin"] == "1085.08"
    assert body["equity"] == "9986.00" and body["free_margin"] == "8914.92"
    assert Decimal(body["margin_level_pct"]) == (
        Decimal("9986.00") / Decimal("1085.08") * 100
    ).quantize(Decimal("0.01"))


async def test_order_events_and_paged_lists(api: Api, services: Services) -> None:
    token = await api.key("read,trade")
    async with Flow.running(services) as flow:
        placed = [
            (await api.call("POST", "/v1/orders", token, {**ORDER, "symbol": symbol})).json()
            for symbol in ("EURUSD", "GBPUSD", "EURUSD", "EURUSD", "GBPUSD")
        ]
        await flow.settle()
        one = placed[0]["order_id"]
        events = await api.call("GET", f"/v1/orders/{one}/events", token)
        order = await api.call("GET", f"/v1/orders/{one}", token)
        pages: list[list[str]] = []
        cursor = None
        while True:
            query = "?account_id=live:6&symbol=EURUSD&status=QUEUED&limit=2"
            if cursor:
                query += f"&cursor={cursor}"
            page = (await api.call("GET", "/v1/orders" + query, token)).json()
            pages.append([o["order_id"] for o in page["items"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        other_status = await api.call("GET", "/v1/orders?status=CLOSED", token)
        future = await api.call("GET", "/v1/orders?since=2999-01-01T00:00:00Z", token)
    assert [e["kind"] for e in events.json()] == ["ORDER_SUBMITTED"]
    assert events.json()[0]["status"] == "QUEUED"
    assert len(events.json()[0]["hash"]) == 64 and events.json()[0]["chain_seq"] == 1
    assert order.json()["status"] == "QUEUED" and order.json()["symbol"] == "EURUSD"
    eurusd = sorted((p["order_id"] for i, p in enumerate(placed) if i in (0, 2, 3)), reverse=True)
    assert [i for page in pages for i in page] == eurusd  # newest first, no gap, no repeat
    assert [len(p) for p in pages] == [2, 1]
    assert other_status.json()["items"] == [] and future.json()["items"] == []


async def test_problems_name_the_field_and_the_intake_reason(api: Api) -> None:
    token = await api.key("trade,read")
    bad_qty = await api.call("POST", "/v1/orders", token, {**ORDER, "qty": "1e5"})
    assert bad_qty.status_code == 422
    assert bad_qty.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in bad_qty.json()["errors"]] == ["body.qty"]
    unknown = await api.call("POST", "/v1/orders", token, {**ORDER, "symbol": "NOPE"})
    assert unknown.status_code == 422
    problem = unknown.json()
    assert problem["code"] == "unknown_symbol"
    assert problem["type"] == "urn:execflow:problem:unknown_symbol"
    assert problem["status"] == 422 and problem["title"]
    pending = {**ORDER, "type": "BUY_LIMIT"}
    no_price = await api.call("POST", "/v1/orders", token, pending)
    assert no_price.json()["errors"] == [
        {"field": "body.price", "message": "required for BUY_LIMIT"}
    ]
    wrong_side = await api.call(
        "POST", "/v1/orders", token, {**pending, "side": "SELL", "price": "1.08"}
    )
    assert wrong_side.json()["code"] == "side_does_not_match_order_type"
    placed = await api.call("POST", "/v1/orders", token, ORDER)
    order_id = placed.json()["order_id"]
    not_pending = await api.call("POST", f"/v1/orders/{order_id}/cancel", token)
    assert not_pending.status_code == 409 and not_pending.json()["code"] == "not_pending"
    nowhere = await api.call("GET", "/v1/nowhere", token)
    assert nowhere.status_code == 404 and nowhere.json()["code"] == "not_found"


async def test_unknown_and_foreign_orders_answer_alike(api: Api) -> None:
    own = await api.key("trade,read", "live:6")
    other = await api.key("trade,read", "live:7")
    placed = await api.call("POST", "/v1/orders", other, {**ORDER, "account_id": "live:7"})
    foreign_id = placed.json()["order_id"]
    missing_id = str(int(foreign_id) + 999)
    for method, suffix in (("GET", ""), ("GET", "/events"), ("POST", "/close")):
        foreign = await api.call(method, f"/v1/orders/{foreign_id}{suffix}", own)
        missing = await api.call(method, f"/v1/orders/{missing_id}{suffix}", own)
        assert foreign.status_code == missing.status_code == 404
        shape = {k: v for k, v in foreign.json().items() if k not in ("detail", "instance")}
        assert shape == {k: v for k, v in missing.json().items() if k not in ("detail", "instance")}
    listed = await api.call("GET", "/v1/orders", own)
    assert foreign_id not in {o["order_id"] for o in listed.json()["items"]}


@pytest.fixture
def tight(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"api_rate_per_s": 0.5, "api_rate_burst": 3, "api_max_body_bytes": 512}
    )


async def test_rate_limit_body_limit_and_no_cors(
    tight: Settings, services: Services, api: Api
) -> None:
    token = await api.key("read")
    app = create_app(make_app(replace(services, settings=tight)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        headers = {"Authorization": f"Bearer {token}", "Origin": "https://evil.example"}
        codes = [(await c.get("/v1/quotes", headers=headers)) for _ in range(4)]
        big = await c.post(
            "/v1/orders",
            content=b"{" + b" " * 600 + b"}",
            headers={**headers, "Idempotency-Key": "x", "Content-Type": "application/json"},
        )
    assert [r.status_code for r in codes] == [200, 200, 200, 429]
    assert codes[-1].headers["retry-after"] == "2"
    assert codes[-1].json()["code"] == "rate_limited"
    assert all("access-control-allow-origin" not in r.headers for r in codes)
    assert big.status_code == 413 and big.json()["code"] == "body_too_large"


async def test_cors_only_when_configured(settings: Settings, services: Services) -> None:
    allowed = settings.model_copy(update={"api_cors_origins": ("https://desk.example",)})
    app = create_app(make_app(replace(services, settings=allowed)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        answer = await c.get("/healthz", headers={"Origin": "https://desk.example"})
    assert answer.headers["access-control-allow-origin"] == "https://desk.example"


async def test_each_mutating_call_is_one_log_line_without_secrets(
    api: Api, logs: LogSystem, settings: Settings
) -> None:
    token = await api.key("trade,read")
    await api.call("POST", "/v1/orders", token, ORDER, idempotency_key="idem-1")
    await api.call("POST", "/v1/orders", token, {**ORDER, "qty": "99"}, idempotency_key="idem-2")
    await api.call("GET", "/v1/quotes", token)
    await api.call("POST", "/v1/orders", f"{token}x", ORDER, idempotency_key="idem-3")
    assert logs.flush()
    files = _log_files(Path(settings.log_dir))
    lines = [line for line in files["api.log"].splitlines() if "[API:CALL]" in line]
    key_id = token.split("_")[1]
    assert len(lines) == 3
    assert "key_id=- action=place_order result=401" in lines[2] and "idem-3" in lines[2]
    lines = lines[:2]
    assert all(f"key_id={key_id}" in line and "user=live:6" in line for line in lines)
    assert "action=place_order" in lines[0] and "result=201" in lines[0]
    assert "idempotency_key=idem-1" in lines[0]
    assert "result=422" in lines[1] and "code=quantity_above_maximum" in lines[1]
    secret = token.split("_", 2)[2]
    for name, text in files.items():
        assert secret not in text, name


def _log_files(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text(errors="replace") for path in directory.iterdir()}


async def test_readiness(api: Api) -> None:
    ready = await api.call("GET", "/readyz", None)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    api.context.readiness.state_rebuilt = False
    assert (await api.call("GET", "/readyz", None)).status_code == 503
    assert (await api.call("GET", "/healthz", None)).json() == {"status": "ok"}


def test_cli_keys_are_shown_once_stored_hashed_and_revocable(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXECFLOW_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("EXECFLOW_LOG_DIR", str(tmp_path / "cli-logs"))
    runner = CliRunner()
    made = runner.invoke(
        cli_app, ["api-key", "create", "--scopes", "read,trade", "--accounts", "live:6,live:7"]
    )
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    key_id, secret = token.split("_")[1], token.split("_", 2)[2]
    database = Path(settings.database_url.split("///", 1)[1])
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT key_id, secret_hash, scopes FROM api_keys").fetchall()
    assert [(r[0], r[2]) for r in rows] == [(key_id, '["read","trade"]')]
    assert secret.encode() not in database.read_bytes()
    assert len(rows[0][1]) == 32 and rows[0][1] != secret.encode()
    listed = runner.invoke(cli_app, ["api-key", "list"])
    assert key_id in listed.output and secret not in listed.output
    revoked = runner.invoke(cli_app, ["api-key", "revoke", key_id])
    assert revoked.exit_code == 0 and key_id in revoked.output
    again = runner.invoke(cli_app, ["api-key", "revoke", key_id])
    assert again.exit_code == 1
    bad = runner.invoke(cli_app, ["api-key", "create", "--scopes", "root", "--accounts", "x"])
    assert bad.exit_code == 2 and "unknown scope" in bad.output


async def test_a_revocation_elsewhere_is_seen_after_the_cache_time(
    api: Api, clock: FakeClock, settings: Settings
) -> None:
    token = await api.key("read")
    assert (await api.call("GET", "/v1/quotes", token)).status_code == 200
    await api.context.store.revoke_key(token.split("_")[1], clock.now())  # as the CLI does
    assert (await api.call("GET", "/v1/quotes", token)).status_code == 200  # cached
    clock.advance(settings.api_key_cache_s + 0.1)
    assert (await api.call("GET", "/v1/quotes", token)).status_code == 401
