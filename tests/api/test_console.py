"""The ops console in headless Chromium (Selenium + Debian's chromium-driver) on real data.

One embedded deployment (pipeline, the LP simulator behind a real FIX session and its
gateway, the API under uvicorn) runs a small scenario over HTTP first: market orders
(some rejected by the LP, so its quality has reject reasons), one order routed to an
LP that has no gateway (it stays unanswered: stuck), one report for an id never sent
(a dead letter, its id hostile markup). Then the page: a key without ``admin`` sees the
API's 403 problem; the admin key opens every view, each showing that data; DLQ replay
and the resolution are done through the page and checked through the API; no browser
console error. Screenshots go to ``EXECFLOW_SCREENSHOT_DIR`` (default: the test's tmp).

Skips when chromium or chromedriver is missing, unless EXECFLOW_REQUIRE_SERVICES is set.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from execflow.api.keys import Scope, mint_key
from execflow.api.server import ApiServer, api_context
from execflow.logs.setup import setup_logging
from execflow.metrics import Metrics
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import Services, open_services
from execflow.settings import LpRouting, Settings, require_services
from execflow.sim.refdata import demo_seed
from execflow.sim.viafix import ViaFix
from tests.api.live import Serve, served_in_a_thread
from tests.sim.conftest import quiet_config

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

pytestmark = pytest.mark.timeout(120)

HOSTILE_ID = '<img src=x onerror="document.title=1">'
DLQ_REASON = "malformed_report"  # the hostile ClOrdID is not an id
GHOST_SYMBOL = "GBPUSD"  # routed to an LP without a gateway: never answered
FINAL_OR_OPEN = {"OPEN", "CLOSED", "REJECTED", "CANCELLED"}


def _browser() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        message = "chromium and chromedriver are needed (Debian: chromium, chromium-driver)"
        if require_services():
            pytest.fail(message + " and EXECFLOW_REQUIRE_SERVICES is set")
        pytest.skip(message)
    return chromium, driver


@dataclass
class World:
    """The running deployment: where it listens, its keys, and a way into its loop."""

    base: str
    admin: str
    reader: str
    everything: str
    loop: asyncio.AbstractEventLoop
    services: Services

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the deployment's loop and wait for it."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(30)


@contextmanager
def deployment(directory: Path) -> Iterator[World]:
    """Pipeline + FIX-backed LP simulator + API on free ports, in a thread of its own."""
    settings = Settings(
        log_dir=directory / "logs",
        database_url=f"sqlite+aiosqlite:///{directory / 'db.sqlite'}",
        api_port=0,
        shutdown_timeout_s=2.0,
        stuck_after_s=1.0,
        lp_routing=LpRouting(default="sim", routes={f"*:{GHOST_SYMBOL}": "ghost"}),
    )

    async def main(serve: Serve[World]) -> None:
        with setup_logging(settings, "api", bridge=False) as logs:
            metrics = Metrics("api")
            async with open_services(settings, logs, metrics=metrics) as services:
                lp = quiet_config(reject_rate=0.25, slippage_rate=0.5)
                via = ViaFix(services, lp, directory / "fix", seed=5, tick_interval_s=0.2)
                pipeline = EmbeddedPipeline(services, lp=via, rebuild=False)
                seed = demo_seed(4, random.Random(3), via.feed)
                await apply_seed(seed, services.state, services.database)
                await pipeline.start()
                context = api_context(services)
                context.readiness.state_rebuilt = True
                now = services.clock.now()
                admin = mint_key("ops", [Scope.ADMIN, Scope.READ], ["*"], now)
                reader = mint_key("desk", [Scope.READ], ["*"], now)
                everything = mint_key("scenario", list(Scope), ["*"], now)
                for minted in (admin, reader, everything):
                    await context.store.add_key(minted.record)
                server = ApiServer(context, port=0)
                await server.start()
                world = World(
                    f"http://127.0.0.1:{server.port}",
                    admin.token,
                    reader.token,
                    everything.token,
                    asyncio.get_running_loop(),
                    services,
                )
                try:
                    await serve(world)
                finally:
                    await server.stop()
                    await pipeline.stop()

    with served_in_a_thread("console-world", main) as world:
        yield world


def _until(what: str, check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout_s} s: {what}")
        time.sleep(0.1)


@dataclass
class Scenario:
    """What the scenario left behind, for the page to show."""

    filled: str
    stuck: str


def _scenario(world: World, client: httpx.Client) -> Scenario:
    placed: list[str] = []
    for n in range(10):
        body = {
            "account_id": ("live:1", "live:2", "live:4")[n % 3],
            "symbol": ("EURUSD", "USDJPY")[n % 2],
            "side": ("BUY", "SELL")[n % 3 % 2],
            "qty": "0.10",
        }
        answer = client.post("/v1/orders", json=body, headers={"Idempotency-Key": f"scn-{n}"})
        assert answer.status_code == 201, answer.text
        placed.append(answer.json()["order_id"])
    ghost = client.post(
        "/v1/orders",
        json={"account_id": "live:2", "symbol": GHOST_SYMBOL, "side": "BUY", "qty": "0.10"},
        headers={"Idempotency-Key": "scn-ghost"},
    )
    assert ghost.status_code == 201, ghost.text

    def statuses() -> dict[str, str]:
        return {o: client.get(f"/v1/orders/{o}").json()["status"] for o in placed}

    _until("every order answered", lambda: set(statuses().values()) <= FINAL_OR_OPEN)
    done = statuses()
    filled = next(o for o, s in done.items() if s == "OPEN")
    stray = {
        "type": "8",
        "clordid": HOSTILE_ID,
        "exec_id": "stray-1",
        "ord_status": "EXECUTED",
        "symbol": "EURUSD",
        "provider": "sim",
    }
    queues = world.services.queues
    world.run(world.services.bus.publish(queues.reports, orjson.dumps(stray), {}))
    _until("a dead letter", lambda: client.get("/v1/admin/dlq").json())
    stuck = ghost.json()["order_id"]
    _until("the stuck order", lambda: client.get("/v1/admin/stuck").json())

    def recorded() -> int:
        lps = client.get("/v1/admin/lp-quality").json()["lps"]
        return sum(q["answered"] for q in lps if q["lp"] == "sim")

    _until("LP quality rows", lambda: recorded() >= len(placed))
    return Scenario(filled, stuck)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[WebDriver]:
    chromium, chromedriver = _browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,820",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield browser
    finally:
        browser.quit()


def _screenshots(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("EXECFLOW_SCREENSHOT_DIR") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _text(browser: WebDriver, element_id: str) -> str:
    return str(browser.find_element(By.ID, element_id).text)


def _wait_text(browser: WebDriver, element_id: str, *needles: str, timeout_s: float = 15) -> str:
    try:
        WebDriverWait(browser, timeout_s).until(
            lambda b: all(n in _text(b, element_id) for n in needles)
        )
    except TimeoutException:
        raise AssertionError(
            f"#{element_id} never showed {needles}: {_text(browser, element_id)!r}"
        ) from None
    return _text(browser, element_id)


def _open(browser: WebDriver, view: str) -> None:
    browser.find_element(By.CSS_SELECTOR, f"nav button[data-view='{view}']").click()


def _use_key(browser: WebDriver, token: str) -> None:
    field = browser.find_element(By.ID, "key-input")
    field.clear()
    field.send_keys(token)
    browser.find_element(By.ID, "key-use").click()


def _errors(browser: WebDriver) -> list[str]:
    """Console errors since the last call (the log is emptied by each read)."""
    entries: list[dict[str, Any]] = browser.get_log("browser")  # type: ignore[no-untyped-call]
    return [str(e["message"]) for e in entries if e["level"] == "SEVERE"]


def test_every_view_shows_real_data_and_the_actions_work(tmp_path: Path, driver: WebDriver) -> None:
    shots = _screenshots(tmp_path)
    with deployment(tmp_path) as world:
        auth = {"Authorization": f"Bearer {world.everything}"}
        with httpx.Client(base_url=world.base, headers=auth, timeout=30) as client:
            scenario = _scenario(world, client)
            browser = driver
            browser.get(f"{world.base}/console")  # redirected to /console/
            assert browser.title == "execflow ops console"
            assert "no key" in _text(browser, "key-state")

            # a key without the admin scope: the API's 403 problem, on the page
            _use_key(browser, world.reader)
            _wait_text(browser, "health-problem", "403", "missing_scope")
            refused = _errors(browser)
            assert all("403" in message for message in refused), refused  # the refused fetch

            _use_key(browser, world.admin)
            health = _wait_text(browser, "health-table", "worker_open", "dispatcher", "up")
            assert "DOWN" in health  # the LP "ghost" has no gateway: its queue has no consumer
            assert _text(browser, "health-status") == "ready"
            assert DLQ_REASON in _text(browser, "health-dlq")
            browser.save_screenshot(str(shots / "health.png"))

            _open(browser, "queues")
            queues = _wait_text(browser, "queues-table", "provider_requests.ghost")
            ghost_row = next(r for r in queues.splitlines() if "provider_requests.ghost" in r)
            assert ghost_row.split()[-2:] == ["1", "0"], ghost_row  # one waiting, no consumer
            browser.save_screenshot(str(shots / "queues.png"))

            _open(browser, "dlq")
            _wait_text(browser, "dlq-table", DLQ_REASON, HOSTILE_ID)
            table = browser.find_element(By.ID, "dlq-table")
            assert not table.find_elements(By.TAG_NAME, "img")  # shown as text, never markup
            assert browser.title == "execflow ops console"
            browser.save_screenshot(str(shots / "dlq.png"))
            [letter] = client.get("/v1/admin/dlq").json()
            table.find_element(By.CSS_SELECTOR, "button.replay").click()
            _wait_text(browser, "dlq-message", "replayed 1")
            replayed = client.get("/v1/admin/dlq?include_replayed=true").json()
            by_id = {d["id"]: d for d in replayed}
            assert by_id[letter["id"]]["replayed_at"] is not None

            _open(browser, "stuck")
            _wait_text(browser, "stuck-table", scenario.stuck, GHOST_SYMBOL, "OPEN")
            browser.save_screenshot(str(shots / "stuck.png"))
            row = browser.find_element(By.ID, "stuck-table")
            Select(row.find_element(By.CSS_SELECTOR, "select.resolve-as")).select_by_value(
                "rejected"
            )
            row.find_element(By.CSS_SELECTOR, "input.resolve-reason").send_keys(
                "LP ghost confirmed it never received it"
            )
            row.find_element(By.CSS_SELECTOR, "button.resolve").click()
            _wait_text(browser, "stuck-message", scenario.stuck, "REJECTED", "api:ops:")
            order = client.get(f"/v1/orders/{scenario.stuck}").json()
            assert order["status"] == "REJECTED"
            assert client.get("/v1/admin/stuck").json() == []
            # the resolution's DB event reaches the database through the db writer, after
            # the state commit the page reported: wait for it, then check whose it is
            events = _until(
                "the resolution's event in the database",
                lambda: [
                    e
                    for e in client.get(f"/v1/orders/{scenario.stuck}/events").json()
                    if e["kind"] == "ORDER_REJECTED"
                ],
            )
            assert ":operator:" in events[-1]["event_id"]

            _open(browser, "lp")
            lp = _wait_text(browser, "lp-table", "sim")
            sim_row = next(r for r in lp.splitlines() if r.startswith("sim "))
            [sim] = [
                q for q in client.get("/v1/admin/lp-quality").json()["lps"] if q["lp"] == "sim"
            ]
            assert sim_row.split()[1:3] == [str(sim["requests"]), str(sim["answered"])], sim_row
            assert sim["rejected"] > 0 and sim["requests"] >= 10
            assert _text(browser, "lp-rejects").count("sim") >= 1
            browser.save_screenshot(str(shots / "lp_quality.png"))

            _open(browser, "trail")
            field = browser.find_element(By.ID, "trail-order")
            field.send_keys(scenario.filled)
            browser.find_element(By.ID, "trail-go").click()
            trail = _wait_text(browser, "trail-table", "dispatcher", "worker_open", "api")
            assert trail.count(scenario.filled) >= 3
            browser.save_screenshot(str(shots / "trail.png"))

            _open(browser, "live")
            browser.find_element(By.ID, "live-accounts").send_keys("live:4")
            browser.find_element(By.ID, "live-start").click()
            _wait_text(browser, "live-state", "following")
            placed = client.post(
                "/v1/orders",
                json={"account_id": "live:4", "symbol": "EURUSD", "side": "BUY", "qty": "0.20"},
                headers={"Idempotency-Key": "live-1"},
            )
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["order_id"]
            _wait_text(browser, "live-table", order_id, "live:4")
            browser.save_screenshot(str(shots / "live.png"))
            browser.find_element(By.ID, "live-stop").click()

            assert _errors(browser) == []
