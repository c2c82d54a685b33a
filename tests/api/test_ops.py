"""Operator reads behind the console: health, queues, LP quality, an order's trail; the page."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from execflow.backends.sql import SqlDatabase
from execflow.backends.sql_lp import SqlLpExecutionStore
from execflow.clock import FakeClock
from execflow.domain.enums import LpOrderType, RequestKind, Side
from execflow.domain.lpquality import ExecutionStatus, LpExecution
from execflow.pipeline.services import Services
from tests.api.conftest import Api
from tests.domain.factories import NOW
from tests.pipeline.flow import Flow


async def test_health_and_queues_say_who_consumes_what(
    api: Api, services: Services, clock: FakeClock
) -> None:
    admin = await api.key("admin", "*")
    async with Flow.running(services) as flow:
        waiting = await flow.open_request()  # the LP (played by hand) never answers
        clock.advance(services.settings.stuck_after_s + 1)
        health = await api.call("GET", "/v1/admin/health", admin)
        queues = await api.call("GET", "/v1/admin/queues", admin)
    assert health.status_code == 200, health.text
    doc = health.json()
    assert doc["status"] == "ready" and doc["metrics"] is False  # no registry in this process
    components = {c["component"]: c for c in doc["components"]}
    assert components["dispatcher"]["up"] is True
    assert components["worker_open"]["up"] is True and components["worker_open"]["consumers"] == 1
    assert components["lp"]["up"] is False  # nobody consumes provider_requests here
    assert "dlq" not in components
    assert doc["stuck_orders"] == 1 and waiting.order_id
    listed = queues.json()
    assert listed[0]["component"] == "dispatcher"
    assert listed[-1] == {
        "queue": services.queues.dlq,
        "component": "dlq",
        "depth": 0,
        "consumers": 0,
        "error": None,
    }


async def test_lp_quality_folds_the_stored_records(api: Api, services: Services) -> None:
    admin = await api.key("admin", "*")
    assert isinstance(services.database, SqlDatabase)
    base = LpExecution(
        lifecycle_id="L1",
        lp="lpa",
        order_id="1",
        account_id="live:6",
        kind=RequestKind.OPEN,
        symbol="EURUSD",
        side=Side.BUY,
        order_type=LpOrderType.MARKET,
        qty=Decimal("0.10"),
        sent_at=NOW,
        first_report_at=NOW + timedelta(milliseconds=12),
    )
    filled = replace(
        base,
        reference_px=Decimal("1.08500"),
        pip=Decimal("0.0001"),
        status=ExecutionStatus.EXECUTED,
        filled_at=NOW + timedelta(milliseconds=12),
        cum_qty=Decimal("0.10"),
        avg_px=Decimal("1.08510"),
    )
    refused = replace(
        base,
        lifecycle_id="L2",
        order_id="2",
        status=ExecutionStatus.REJECTED,
        reject_reason="<b>no liquidity</b>",
    )
    await SqlLpExecutionStore(services.database).upsert([filled, refused])
    answer = await api.call("GET", "/v1/admin/lp-quality", admin)
    assert answer.status_code == 200, answer.text
    [lpa] = answer.json()["lps"]
    assert lpa["requests"] == 2 and lpa["answered"] == 2 and lpa["rejected"] == 1
    assert lpa["rejects_by_reason"] == {"<b>no liquidity</b>": 1}
    assert Decimal(lpa["slippage"]["mean_pips"]) == -1 and Decimal(lpa["fill_ratio"]) == Decimal(
        "0.5"
    )
    later = await api.call("GET", "/v1/admin/lp-quality?since=2099-01-01T00:00:00", admin)
    assert later.json()["lps"] == []


async def test_an_orders_trail_and_who_may_read_it(api: Api, services: Services) -> None:
    admin = await api.key("admin", "*")
    own_only = await api.key("admin", "live:7")
    async with Flow.running(services) as flow:
        opened = await flow.opened()
    # the trail is read from the log files: every line the pipeline wrote must be on disk
    assert await asyncio.to_thread(services.logs.flush)
    answer = await api.call("GET", f"/v1/admin/orders/{opened.order_id}/trace", admin)
    assert answer.status_code == 200, answer.text
    trail = answer.json()
    tags = [line["tag"] for line in trail["lines"]]
    assert "INTAKE:RECEIVED" in tags and trail["trace_ids"] and not trail["truncated"]
    assert {line["component"] for line in trail["lines"]} >= {"intake", "worker_open"}
    foreign = await api.call("GET", f"/v1/admin/orders/{opened.order_id}/trace", own_only)
    missing = await api.call("GET", "/v1/admin/orders/nope/trace", admin)
    assert foreign.status_code == missing.status_code == 404


async def test_the_console_page_needs_no_key_and_locks_itself_down(api: Api) -> None:
    moved = await api.client.get("/console")
    assert moved.status_code == 308 and moved.headers["location"] == "console/"
    page = await api.client.get("/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert '<script src="console.js"' in page.text
    script = await api.client.get("/console/console.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text  # data goes on the page as text only
    assert (await api.client.get("/console/console.css")).status_code == 200
    schema = (await api.client.get("/openapi.json")).json()
    assert not [p for p in schema["paths"] if p.startswith("/console")]
