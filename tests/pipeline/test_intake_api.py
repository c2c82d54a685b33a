"""Order intake and the seed file, without the consumers: what is written, sent, logged."""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from execflow.backends.database import AccountRecord
from execflow.backends.memory_bus import InMemoryBus
from execflow.backends.state import Write
from execflow.clock import FakeClock
from execflow.domain.codec import account_to_dict
from execflow.errors import BusError, StoreError, VersionConflict
from execflow.metrics import Metrics
from execflow.pipeline.completeness import mark_complete
from execflow.pipeline.intake import NumericIds, OrderIntake, TimeOrderIds
from execflow.pipeline.seed import SeedError, apply_seed, load_seed, parse_seed, read_seed
from execflow.pipeline.services import Services
from tests.pipeline.conftest import LogReader, drain
from tests.pipeline.flow import SEED_FILE


@pytest.fixture
async def seeded(services: Services) -> Services:
    await apply_seed(await read_seed(SEED_FILE), services.state, services.database)
    return services


async def test_market_order_reserves_registers_and_sends(
    seeded: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    intake = OrderIntake(seeded, NumericIds())
    result = await intake.open_market("live:6", "EURUSD", "BUY", "1.00", sl="1.08000")
    assert result.accepted and result.order_id == "3163458366000" == result.lifecycle_id
    assert result.status == "QUEUED"
    account = await seeded.state.get_account("live:6")
    assert account is not None
    # 1 lot x 100000 x ask (1.08502 + hs 0.00006) / 100
    assert Decimal(account.data["used_margin_all"]) == Decimal("1085.08")
    assert await seeded.state.get_lifecycle(result.order_id) == {
        "lifecycle_id": result.order_id,
        "account_id": "live:6",
        "order_id": result.order_id,
        "kind": "OPEN",
    }
    [event] = await drain(bus, seeded.queues.db_updates)
    assert orjson.loads(event.body)["kind"] == "ORDER_SUBMITTED"
    assert event.message_id == f"{result.order_id}:{result.order_id}:ORDER_SUBMITTED"
    [request] = await drain(bus, seeded.queues.provider_requests)
    body = orjson.loads(request.body)
    assert (body["kind"], body["side"], body["qty"]) == ("OPEN", "BUY", "1.00")
    assert request.headers["trace_id"] == result.trace_id == event.headers["trace_id"]
    sent = read_logs.one("intake", "INTAKE:SENT")
    assert sent.get("order_id") == result.order_id and sent.get("reserved_margin") == "1085.08"
    [calc] = [c for c in read_logs.calculations() if c["event.action"] == "MARGIN_RESERVE"]
    assert calc["outputs"]["reserved_margin"] == "1085.08"


async def test_insufficient_margin_is_refused_and_nothing_leaves(
    seeded: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    intake = OrderIntake(seeded, NumericIds())
    result = await intake.open_market("live:9", "EURUSD", "BUY", "1.00")
    assert not result.accepted and result.reason == "insufficient_margin"
    assert await seeded.state.list_orders("live:9") == {}
    assert await drain(bus, seeded.queues.provider_requests) == []
    assert await drain(bus, seeded.queues.db_updates) == []
    refused = read_logs.one("intake", "INTAKE:REFUSED")
    assert refused.get("reason") == "insufficient_margin" and refused.get("user") == "live:9"


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda i: i.open_market("live:404", "EURUSD", "BUY", "1"), "unknown_account"),
        (lambda i: i.open_market("live:6", "NOPE", "BUY", "1"), "unknown_symbol"),
        (lambda i: i.close("1234567890123"), "unknown_order"),
        (
            lambda i: i.place_pending("live:6", "EURUSD", "BUY_LIMIT", "1", "1.2"),
            "price_wrong_side",
        ),
    ],
)
async def test_refusals(seeded: Services, call: object, reason: str) -> None:
    result = await call(OrderIntake(seeded, NumericIds()))  # type: ignore[operator]
    assert (result.accepted, result.reason) == (False, reason)


async def test_close_refused_until_open(seeded: Services) -> None:
    intake = OrderIntake(seeded, NumericIds())
    placed = await intake.open_market("live:6", "EURUSD", "SELL", "0.10")
    assert placed.order_id is not None
    refused = await intake.close(placed.order_id)
    assert (refused.reason, refused.detail) == ("not_open", "QUEUED")


async def test_account_and_instrument_fall_back_and_are_cached_again(
    seeded: Services, read_logs: LogReader
) -> None:
    account = await seeded.state.get_account("live:6")
    assert account is not None
    await seeded.state.flush_all()  # the store lost everything; the database did not
    # ... and was rebuilt (marked complete) without this account: the fallback serves it.
    # (While the marker is missing a fallback waits for the rebuild: test_state_loss.py.)
    await mark_complete(seeded.state)
    await seeded.database.upsert_accounts([AccountRecord("live:6", 5, account.data)])
    for symbol, quote in tomllib.loads(SEED_FILE.read_text())["prices"].items():
        await seeded.state.put_price(symbol, quote)
    services = replace(seeded, settings=seeded.settings.model_copy(update={"seed_file": SEED_FILE}))
    result = await OrderIntake(services, NumericIds()).open_market("live:6", "GBPUSD", "BUY", "0.5")
    assert result.accepted
    assert await services.state.get_instrument("standard", "GBPUSD") is not None
    fallbacks = read_logs.find("intake", "INTAKE:FALLBACK")
    assert sorted(r.get("what") or "" for r in fallbacks) == ["account", "instrument"]


def test_time_order_ids_are_13_digit_unique_and_increasing() -> None:
    ids = TimeOrderIds(FakeClock(), instance=3)
    made = [ids.new_id() for _ in range(1000)]
    assert all(len(i) == 13 and i.isdigit() and i.endswith("3") for i in made)
    assert made == sorted(made) and len(set(made)) == 1000


def test_sample_seed_is_complete() -> None:
    seed = load_seed(SEED_FILE)
    symbols = {"EURUSD", "GBPUSD", "USDJPY", "EURGBP", "XAUUSD", "US30", "BTCUSD"}
    for group in ("standard", "pro"):
        assert {i.symbol for i in seed.instruments if i.group == group} == symbols
    assert {q.symbol for q in seed.quotes} == symbols
    kinds = {a.account_id.split(":")[0] for a in seed.accounts}
    assert kinds == {"live", "demo"}


def test_json_seed_equals_toml_seed(tmp_path: Path) -> None:
    data = tomllib.loads(SEED_FILE.read_text())
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(data))
    assert load_seed(path) == load_seed(SEED_FILE)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["accounts"][0].update(group="vip"), "no instruments"),
        (lambda d: d["accounts"][0].update(account_id="six"), "live:6"),
        (lambda d: d["accounts"][0].update(colour="red"), "unknown keys"),
        (lambda d: d["prices"]["EURUSD"].update(bid="1.2", ask="1.1"), "bid <= ask"),
        (lambda d: d["groups"]["pro"].update(AUDUSD={"spread": 1}), "no [symbols.AUDUSD]"),
        (
            lambda d: d["symbols"]["EURUSD"].update(instrument_type="stock"),
            "groups.standard.EURUSD",
        ),
    ],
)
def test_invalid_seed_names_the_problem(change: object, message: str) -> None:
    data = tomllib.loads(SEED_FILE.read_text())
    change(data)  # type: ignore[operator]
    with pytest.raises(SeedError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_seed(data)


async def test_seeding_twice_keeps_balances(seeded: Services) -> None:
    account = await seeded.state.get_account("live:6")
    assert account is not None
    richer = {**account.data, "balance": "12345.00", "version": account.data["version"] + 1}
    await seeded.state.commit("live:6", [Write("account", "live:6", account.version, richer)])
    report = await apply_seed(load_seed(SEED_FILE), seeded.state, seeded.database)
    assert "live:6" in report.accounts_kept and report.accounts_created == []
    kept = await seeded.state.get_account("live:6")
    assert kept is not None and kept.data["balance"] == "12345.00"
    stored = await seeded.database.get_account("demo:12")
    demo = next(a for a in load_seed(SEED_FILE).accounts if a.account_id == "demo:12")
    assert stored is not None and stored.data == account_to_dict(demo)


class _FlakyBus:
    """Wraps a bus: the first ``failures`` publishes raise ``BusError`` (a broker outage)."""

    def __init__(self, inner: InMemoryBus, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.attempts = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def publish(self, *args: object, **kwargs: object) -> str:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise BusError("broker away", queue=str(args[0]))
        return await self.inner.publish(*args, **kwargs)  # type: ignore[arg-type]


async def test_a_send_that_fails_after_the_commit_is_deferred_and_resent(
    seeded: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    flaky = _FlakyBus(bus, failures=5)
    metrics = Metrics("api")
    intake = OrderIntake(replace(seeded, bus=flaky, metrics=metrics), NumericIds())  # type: ignore[arg-type]

    def unsent() -> float | None:
        return metrics.registry.get_sample_value("execflow_intake_unsent")

    assert unsent() == 0
    result = await intake.open_market("live:6", "EURUSD", "BUY", "1.00")
    # committed (margin reserved), so accepted; the send follows in the background
    assert result.accepted and result.send_deferred and intake.deferred == 1
    assert unsent() == 1
    account = await seeded.state.get_account("live:6")
    assert account is not None and Decimal(account.data["used_margin_all"]) > 0
    assert await intake.flush(timeout_s=10) == 0
    assert unsent() == 0
    assert flaky.failures == 0 and flaky.attempts >= 7  # 5 failed, then event + request
    # a publish that went through before a later one failed goes again: same message id
    events = await drain(bus, seeded.queues.db_updates)
    assert {orjson.loads(e.body)["kind"] for e in events} == {"ORDER_SUBMITTED"}
    assert len({e.message_id for e in events}) == 1
    requests = await drain(bus, seeded.queues.provider_requests)
    assert {r.message_id for r in requests} == {result.order_id}
    await intake.shutdown()
    deferred = read_logs.one("intake", "INTAKE:SEND_DEFERRED")
    assert deferred.get("lifecycle_id") == result.order_id and deferred.get("outage") == "true"
    assert read_logs.one("intake", "INTAKE:ACCEPTED").get("send_deferred") == "true"
    resent = read_logs.one("intake", "INTAKE:RESENT")
    assert resent.get("order_id") == result.order_id
    assert read_logs.find("intake", "INTAKE:RESEND_FAILED")
    assert not read_logs.find("intake", "INTAKE:UNSENT")


async def test_close_reports_sends_that_never_went_out_as_critical(
    seeded: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    flaky = _FlakyBus(bus, failures=10**6)
    intake = OrderIntake(replace(seeded, bus=flaky), NumericIds())  # type: ignore[arg-type]
    result = await intake.open_market("live:6", "EURUSD", "BUY", "1.00")
    assert result.accepted and result.send_deferred
    await intake.shutdown(timeout_s=0.2)
    unsent = read_logs.one("intake", "INTAKE:UNSENT")
    assert unsent.level == "CRITICAL" and unsent.get("order_ids") == result.order_id
    assert str(result.order_id) in read_logs.path("provider_errors").read_text()


class _LostAnswerState:
    """Wraps a state store: the next commit is applied, then its answer is lost.

    ``then`` is what the caller sees instead: a ``StoreError`` (a timed-out call that ran
    anyway) or a ``VersionConflict`` (the client's retry conflicting with its own first
    attempt). ``apply=False`` loses the commit itself too.
    """

    def __init__(self, inner: object, then: StoreError, apply: bool = True) -> None:
        self.inner = inner
        self.then: StoreError | None = then
        self.apply = apply

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def commit(self, account_id: str, writes: list[Write]) -> None:
        then, self.then = self.then, None
        if then is None or self.apply:
            await self.inner.commit(account_id, writes)  # type: ignore[attr-defined]
        if then is not None:
            raise then


@pytest.mark.parametrize(
    "lost",
    [StoreError("Redis unreachable: commit timed out"), VersionConflict("order changed")],
    ids=["timed_out", "retry_conflicted"],
)
async def test_a_commit_whose_answer_was_lost_is_found_applied_and_sent(
    seeded: Services, bus: InMemoryBus, read_logs: LogReader, lost: StoreError
) -> None:
    state = _LostAnswerState(seeded.state, lost)
    intake = OrderIntake(replace(seeded, state=state), NumericIds())  # type: ignore[arg-type]
    result = await intake.open_market("live:6", "EURUSD", "BUY", "1.00")
    assert result.accepted and not result.send_deferred
    # reserved once (no second order, no second reservation), and the request went out
    account = await seeded.state.get_account("live:6")
    assert account is not None and account.version == 2
    assert Decimal(account.data["used_margin_all"]) == Decimal("1085.08")
    [request] = await drain(bus, seeded.queues.provider_requests)
    assert request.message_id == result.order_id
    assert read_logs.one("intake", "INTAKE:COMMIT_LANDED").get("order_id") == result.order_id


async def test_a_commit_that_did_not_run_is_retried_or_raised(
    seeded: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    conflicted = _LostAnswerState(seeded.state, VersionConflict("order changed"), apply=False)
    intake = OrderIntake(replace(seeded, state=conflicted), NumericIds())  # type: ignore[arg-type]
    result = await intake.open_market("live:6", "EURUSD", "BUY", "1.00")
    assert result.accepted  # a genuine conflict: reloaded and committed on the next try
    assert read_logs.find("intake", "INTAKE:CONFLICT")
    timed_out = _LostAnswerState(seeded.state, StoreError("Redis unreachable"), apply=False)
    intake = OrderIntake(replace(seeded, state=timed_out), NumericIds(4000000000000))  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        await intake.open_market("live:6", "EURUSD", "BUY", "1.00")
    assert await seeded.state.get_order("live:6", "4000000000000") is None
    assert len(await drain(bus, seeded.queues.provider_requests)) == 1  # the first one only


# -- the intake reads time from the injected clock ---------------------------------------------


class _SlowBus(_FlakyBus):
    """A flaky bus on which every publish takes ``step_s`` on the fake clock."""

    def __init__(self, inner: InMemoryBus, failures: int, clock: FakeClock, step_s: float) -> None:
        super().__init__(inner, failures)
        self.clock = clock
        self.step_s = step_s

    async def publish(self, *args: object, **kwargs: object) -> str:
        self.clock.advance(self.step_s)
        return await super().publish(*args, **kwargs)


async def test_processing_times_follow_the_injected_clock(
    seeded: Services, bus: InMemoryBus, clock: FakeClock, read_logs: LogReader
) -> None:
    # each publish takes 1 s of fake time; the event and the request go out together
    # (the request after its registration), the first event publish fails
    slow = _SlowBus(bus, failures=1, clock=clock, step_s=1.0)
    intake = OrderIntake(replace(seeded, bus=slow), NumericIds())  # type: ignore[arg-type]
    result = await intake.open_market("live:6", "EURUSD", "BUY", "1.00")
    assert result.accepted and result.send_deferred
    assert await intake.flush(timeout_s=10) == 0
    await intake.shutdown()
    assert slow.attempts == 4
    # received at 0 s, answered at 2 s; deferred at 2 s, resent by 4 s
    accepted = read_logs.one("intake", "INTAKE:ACCEPTED")
    assert accepted.get("processing_time_ms") == "2000.0"
    assert read_logs.one("intake", "INTAKE:RESENT").get("processing_time_ms") == "2000.0"


class _DownState:
    """Wraps a state store: commits time out without running, and it never answers a ping.

    Each ping takes ``step_s`` on the fake clock (a real one would wait for its timeout).
    """

    def __init__(self, inner: object, clock: FakeClock, step_s: float) -> None:
        self.inner = inner
        self.clock = clock
        self.step_s = step_s
        self.pings = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def commit(self, account_id: str, writes: list[Write]) -> None:
        raise StoreError("Redis unreachable: commit timed out")

    async def ping(self) -> None:
        self.pings += 1
        self.clock.advance(self.step_s)
        raise StoreError("Redis unreachable")


async def test_the_wait_for_a_lost_commit_answer_ends_on_the_injected_clock(
    seeded: Services, clock: FakeClock, read_logs: LogReader
) -> None:
    settings = seeded.settings.model_copy(update={"intake_commit_answer_timeout_s": 25.0})
    down = _DownState(seeded.state, clock, step_s=10.0)
    services = replace(seeded, state=down, settings=settings)  # type: ignore[arg-type]
    intake = OrderIntake(services, NumericIds())
    with pytest.raises(StoreError):
        await intake.open_market("live:6", "EURUSD", "BUY", "1.00")
    # pings at 10, 20 and 30 s of fake time: the third is past the 25 s timeout
    assert down.pings == 3
    unknown = read_logs.one("intake", "INTAKE:COMMIT_UNKNOWN")
    assert unknown.level == "CRITICAL" and "did not come back" in (unknown.get("hint") or "")
