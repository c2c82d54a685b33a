"""The runner's semantics on the in-memory bus: ack, retry, DLQ, park, concurrency, shutdown."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from execflow.backends.bus import (
    ACK_NEVER_SUSPENDS,
    H_ATTEMPTS,
    H_ERROR,
    H_ORIGINAL_QUEUE,
    H_REASON,
    Message,
)
from execflow.backends.memory_bus import InMemoryBus
from execflow.errors import TransitionError, VersionConflict
from execflow.logs.events import ERROR
from execflow.metrics import Metrics
from execflow.pipeline.results import Ack, DeadLetter, HandlerResult, Park
from execflow.pipeline.retry import OnExhausted, RetryPolicy, park_policy, retry_policy
from execflow.pipeline.runner import ConsumerSpec, Runner, run_consumers
from execflow.pipeline.services import Services
from tests.pipeline.conftest import LogReader, drain, settle, spin

QUEUE = "execflow.test.in"
OUT = "execflow.test.out"
COMPONENT = "worker_open"  # any catalog component: the runner only needs its log file
FILE = "worker_open"


def make_spec(
    services: Services,
    handler: Callable[[Message], Awaitable[HandlerResult]],
    **overrides: object,
) -> ConsumerSpec:
    settings = services.settings
    fields: dict[str, object] = {
        "component": COMPONENT,
        "queue": QUEUE,
        "handler": handler,
        "tag": "TEST",
        "prefetch": settings.prefetch,
        "concurrency": settings.concurrency,
        "retry": retry_policy(settings),
        "park": park_policy(settings),
    }
    fields.update(overrides)
    return ConsumerSpec(**fields)  # type: ignore[arg-type]


def half() -> float:
    """The injected random: 0.5 puts the jitter at exactly zero."""
    return 0.5


async def publish(bus: InMemoryBus, body: bytes = b"{}", **headers: str) -> str:
    return await bus.publish(QUEUE, body, headers)


# -- policy as data -------------------------------------------------------------------------


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=1.0, multiplier=2.0, jitter=0.0)
    assert [policy.delay_s(n, 0.5) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0]


def test_backoff_stays_at_the_cap_past_the_float_range() -> None:
    # a retry-forever consumer (the db writer) reaches attempt 1,025 after ~8.5 h at a
    # 30 s cap; 2.0**1024 overflows a float
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=30.0, multiplier=2.0, jitter=0.2)
    assert policy.delay_s(1_025, 0.5) == 30.0
    assert policy.delay_s(1_000_000, 0.0) == 30.0


def test_jitter_spreads_around_the_nominal_delay() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=100.0, jitter=0.2)
    assert policy.delay_s(1, 0.0) == pytest.approx(0.8)
    assert policy.delay_s(1, 0.5) == pytest.approx(1.0)
    assert policy.delay_s(1, 0.999999) == pytest.approx(1.2, rel=1e-5)


def test_exhaustion_and_non_retryable_types() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert not policy.exhausted(2)
    assert policy.exhausted(3)
    assert policy.non_retryable_reason(TransitionError("x")) == "invalid_transition"
    assert policy.non_retryable_reason(RuntimeError("x")) is None
    forever = RetryPolicy(max_attempts=1, on_exhausted=OnExhausted.RETRY_FOREVER)
    assert not forever.exhausted(50)


def test_policies_follow_the_settings(services: Services) -> None:
    settings = services.settings
    retry = retry_policy(settings)
    park = park_policy(settings)
    assert (retry.max_attempts, retry.exhausted_reason) == (3, "max_attempts")
    assert (park.max_attempts, park.exhausted_reason) == (3, "precondition_timeout")
    assert RetryPolicy().max_attempts == 5


# -- ack ----------------------------------------------------------------------------------------


async def test_ack_only_after_the_handler_returned(
    services: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    seen_unacked: list[tuple[int, int, int]] = []

    async def handler(message: Message) -> HandlerResult:
        await bus.publish(OUT, message.body)
        # The effect is out, the delivery still unacked: a crash now redelivers it.
        seen_unacked.append(bus.pending()[QUEUE])
        return Ack("TEST:SUCCESS", {"order_id": "o1", "user": "live:6"})

    runner = Runner(services, make_spec(services, handler), rand=half)
    await runner.start()
    await publish(bus, b'{"n":1}', trace_id="tr-1", order_id="o1")
    await settle(bus)
    await runner.stop()

    assert seen_unacked == [(0, 1, 0)]
    assert bus.pending()[QUEUE] == (0, 0, 0)
    assert [m.body for m in await drain(bus, OUT)] == [b'{"n":1}']
    line = read_logs.one(FILE, "TEST:SUCCESS")
    assert line.level == "INFO"
    assert line.fields["order_id"] == "o1"
    assert line.fields["trace_id"] == "tr-1"
    assert line.fields["component"] == COMPONENT
    assert "processing_time_ms" in line.fields
    assert runner.log.stats.count("success") == 1


class _RecordingDelivery:
    """Records the task each settle ran in; its ack suspends unless it says it never does."""

    def __init__(self, never_suspends: bool) -> None:
        self.message = Message(b"{}", {}, "m-1", QUEUE)
        self.settled_in: list[asyncio.Task[object] | None] = []
        self._never_suspends = never_suspends
        if never_suspends:
            self.ack_never_suspends = True

    async def ack(self) -> None:
        self.settled_in.append(asyncio.current_task())
        if not self._never_suspends:
            await asyncio.sleep(0)  # a broker's round trip

    async def dead_letter(
        self, reason: str, error: str | None = None, body: bytes | None = None
    ) -> None:
        self.settled_in.append(asyncio.current_task())


async def test_an_ack_is_settled_inline_only_when_it_never_suspends(
    services: Services, bus: InMemoryBus
) -> None:
    async def handler(message: Message) -> HandlerResult:
        return Ack("TEST:SUCCESS", {})

    runner = Runner(services, make_spec(services, handler), rand=half)
    here = asyncio.current_task()
    inline = _RecordingDelivery(never_suspends=True)
    await runner._settle_shielded(inline, Ack("TEST:SUCCESS", {}), 0.0)  # type: ignore[arg-type]
    assert inline.settled_in == [here]
    # an ack that may suspend, or anything but an Ack, still settles in a shielded task
    shielded = _RecordingDelivery(never_suspends=False)
    await runner._settle_shielded(shielded, Ack("TEST:SUCCESS", {}), 0.0)  # type: ignore[arg-type]
    dead = _RecordingDelivery(never_suspends=True)
    await runner._settle_shielded(dead, DeadLetter("r", "e"), 0.0)  # type: ignore[arg-type]
    for delivery in (shielded, dead):
        assert len(delivery.settled_in) == 1
        assert delivery.settled_in[0] is not here
    # the in-memory bus says so, and truly: its ack finishes at the first step
    await publish(bus)
    taken = await bus.get(QUEUE)
    assert taken is not None
    assert getattr(taken, ACK_NEVER_SUSPENDS) is True
    step = taken.ack().__await__()
    with pytest.raises(StopIteration):
        next(step)
    assert bus.pending()[QUEUE] == (0, 0, 0)


async def test_skipped_ack_counts_skipped_and_logs_at_its_level(
    services: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    async def handler(message: Message) -> HandlerResult:
        return Ack("TEST:IGNORED", {"reason": "heartbeat"}, outcome="skipped", level=10)

    runner = Runner(services, make_spec(services, handler), rand=half)
    await runner.start()
    await publish(bus)
    await settle(bus)
    await runner.stop()
    assert read_logs.one(FILE, "TEST:IGNORED").level == "DEBUG"
    assert runner.log.stats.count("skipped") == 1
    assert runner.log.stats.count("success") == 0


# -- retry, DLQ ----------------------------------------------------------------------------------


async def test_exception_is_retried_with_backoff_then_dead_lettered_with_the_error(
    services: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    calls: list[int] = []

    async def handler(message: Message) -> HandlerResult:
        calls.append(message.attempt)
        raise RuntimeError("lp adapter down")

    runner = Runner(services, make_spec(services, handler), rand=half)
    await runner.start()
    await publish(bus, b"payload", trace_id="tr-9")
    await settle(bus)
    await runner.stop()

    assert calls == [1, 2, 3]  # retry_max_attempts=3
    [dead] = await drain(bus, bus.dlq_name)
    assert dead.body == b"payload"
    assert dead.headers[H_REASON] == "max_attempts"
    assert dead.headers[H_ERROR] == "RuntimeError: lp adapter down"
    assert dead.headers[H_ORIGINAL_QUEUE] == QUEUE
    assert dead.headers[H_ATTEMPTS] == "3"
    assert dead.headers["trace_id"] == "tr-9"

    retries = read_logs.find(FILE, "TEST:RETRY")
    assert [r.level for r in retries] == ["WARNING", "WARNING"]
    assert [r.fields["attempt"] for r in retries] == ["1", "2"]
    assert [r.fields["delay_s"] for r in retries] == ["0.001", "0.002"]
    assert retries[0].fields["error_type"] == "RuntimeError"
    dlq = read_logs.one(FILE, "TEST:DLQ")
    assert (dlq.level, dlq.fields["reason"], dlq.fields["attempts"]) == (
        "WARNING",
        "max_attempts",
        "3",
    )
    failed = read_logs.one(FILE, "TEST:FAILED")
    assert failed.level == "ERROR"
    assert "lp adapter down" in failed.fields["traceback"]
    assert [r.tag for r in read_logs.records("provider_errors")] == ["TEST:FAILED"]
    stats = runner.log.stats
    assert (stats.count("retried"), stats.count("dead_lettered"), stats.count("processed")) == (
        2,
        1,
        1,
    )
    assert stats.count("dlq.max_attempts") == 1


async def test_a_retried_message_that_then_succeeds_is_acked_once(
    services: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    attempts: list[int] = []

    async def handler(message: Message) -> HandlerResult:
        attempts.append(message.attempt)
        if len(attempts) == 1:
            raise ConnectionError("state store timeout")
        return Ack("TEST:SUCCESS")

    runner = Runner(services, make_spec(services, handler), rand=half)
    await runner.start()
    await publish(bus)
    await settle(bus)
    await runner.stop()
    assert attempts == [1, 2]
    assert await drain(bus, bus.dlq_name) == []
    assert read_logs.tags(FILE).count("TEST:SUCCESS") == 1
    assert read_logs.tags(FILE).count("TEST:RETRY") == 1


async def test_non_retryable_error_goes_to_the_dlq_at_once(
    services: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    calls = 0

    async def handler(message: Message) -> HandlerResult:
        nonlocal calls
        calls += 1
        raise TransitionError("CLOSED -> OPEN is not an edge")

    runner = Runner(services, make_spec(services, handler), rand=half)
    await runner.start()
    await publish(bus)
    await settle(bus)
    await runner.stop()
    assert calls == 1
    [dead] = await drain(bus, bus.dlq_name)
    assert dead.headers[H_REASON] == "invalid_transition"
    assert "TEST:RETRY" not in read_logs.tags(FILE)
    assert read_logs.one(FILE, "TEST:FAILED").fields["reason"] == "invalid_transition"


async def test_dead_letter_result_at_error_level_is_one_counted_error_line(
    services: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    async def handler(message: Message) -> HandlerResult:
        return DeadLetter("needs_review", "both_legs_filled", {"order_id": "o7"}, ERROR)

    runner = Runner(services, make_spec(services, handler), rand=half)
    await runner.start()
    await publish(bus)
    await settle(bus)
    await runner.stop()
    [dead] = await drain(bus, bus.dlq_name)
    assert (dead.headers[H_REASON], dead.headers[H_ERROR]) == ("needs_review", "both_legs_filled")
    line = read_logs.one(FILE, "TEST:DLQ")
    assert (line.level, line.fields["reason"], line.fields["order_id"]) == (
        "ERROR",
        "needs_review",
        "o7",
    )
    assert [r.tag for r in read_logs.records("provider_errors")] == ["TEST:DLQ"]
    assert runner.log.stats.count("dead_lettered") == 1
    assert runner.log.stats.count("processed") == 1


async def test_retry_forever_never_dead_letters(services: Services, bus: InMemoryBus) -> None:
    calls = 0

    async def handler(message: Message) -> HandlerResult:
        nonlocal calls
        calls += 1
        if calls < 6:
            raise OSError("database unreachable")
        return Ack()

    forever = OnExhausted.RETRY_FOREVER
    policy = RetryPolicy(
        max_attempts=2, base_delay_s=0.001, max_delay_s=0.002, on_exhausted=forever
    )
    runner = Runner(services, make_spec(services, handler, retry=policy), rand=half)
    await runner.start()
    await publish(bus)
    await settle(bus)
    await runner.stop()
    assert calls == 6
    assert await drain(bus, bus.dlq_name) == []


async def test_lost_compare_and_set_rounds_never_use_up_the_attempts(
    services: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    # a hot account: other writers win every round of several attempts in a row; the
    # report is fine, so it comes back with backoff until it commits, never to the DLQ
    calls: list[dict[str, str]] = []

    async def handler(message: Message) -> HandlerResult:
        calls.append(dict(message.headers))
        if len(calls) <= 7:  # more than retry_max_attempts=3
            raise VersionConflict("account moved on", kind="account")
        return Ack("TEST:SUCCESS")

    runner = Runner(services, make_spec(services, handler), rand=half)
    await runner.start()
    await publish(bus)
    await settle(bus)
    await runner.stop()

    assert len(calls) == 8
    assert [c.get("x-conflicts") for c in calls] == [None, "1", "2", "3", "4", "5", "6", "7"]
    assert all("x-retries" not in c for c in calls)
    assert await drain(bus, bus.dlq_name) == []
    retries = read_logs.find(FILE, "TEST:RETRY")
    assert [r.fields["contentions"] for r in retries] == ["1", "2", "3", "4", "5", "6", "7"]
    assert {r.fields["contention"] for r in retries} == {"true"}
    assert read_logs.tags(FILE).count("TEST:SUCCESS") == 1
    assert read_logs.records("provider_errors") == []


async def test_a_message_that_never_wins_its_account_ends_in_the_dlq(
    services: Services, bus: InMemoryBus
) -> None:
    # the guard against a bug that never lets a commit through: max_contentions rounds
    calls = 0

    async def handler(message: Message) -> HandlerResult:
        nonlocal calls
        calls += 1
        raise VersionConflict("account moved on", kind="account")

    policy = replace(retry_policy(services.settings), max_contentions=4)
    runner = Runner(services, make_spec(services, handler, retry=policy), rand=half)
    await runner.start()
    await publish(bus)
    await settle(bus)
    await runner.stop()
    assert calls == 5
    [dead] = await drain(bus, bus.dlq_name)
    assert dead.headers[H_REASON] == "max_attempts"
    assert dead.headers[H_ERROR].startswith("VersionConflict")


# -- park -----------------------------------------------------------------------------------------


async def test_park_comes_back_then_times_out_as_precondition_timeout(
    services: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    calls: list[int] = []

    async def handler(message: Message) -> HandlerResult:
        calls.append(message.attempt)
        return Park("position_not_open", fields={"order_id": "o1"})

    runner = Runner(services, make_spec(services, handler), rand=half)
    await runner.start()
    await publish(bus)
    await settle(bus)
    await runner.stop()

    assert calls == [1, 2, 3]  # park_max_attempts=3
    [dead] = await drain(bus, bus.dlq_name)
    assert (dead.headers[H_REASON], dead.headers[H_ERROR]) == (
        "precondition_timeout",
        "position_not_open",
    )
    parked = read_logs.find(FILE, "TEST:PARKED")
    assert [(p.level, p.fields["attempt"], p.fields["delay_s"]) for p in parked] == [
        ("WARNING", "1", "0.001"),
        ("WARNING", "2", "0.002"),
    ]
    assert parked[0].fields["reason"] == "position_not_open"
    dlq = read_logs.one(FILE, "TEST:DLQ")
    assert (dlq.level, dlq.fields["reason"], dlq.fields["park_reason"]) == (
        "ERROR",
        "precondition_timeout",
        "position_not_open",
    )
    assert runner.log.stats.count("parked") == 2


async def test_park_with_its_own_exhaustion_reason(services: Services, bus: InMemoryBus) -> None:
    async def handler(message: Message) -> HandlerResult:
        return Park("missing_conversion_rate", "missing_conversion_rate")

    runner = Runner(services, make_spec(services, handler), rand=half)
    await runner.start()
    await publish(bus)
    await settle(bus)
    await runner.stop()
    [dead] = await drain(bus, bus.dlq_name)
    assert dead.headers[H_REASON] == "missing_conversion_rate"


async def test_parks_and_error_retries_are_counted_separately(
    services: Services, bus: InMemoryBus
) -> None:
    results: list[HandlerResult | Exception] = [
        Park("too_early"),
        RuntimeError("flaky"),
        Park("too_early"),
        RuntimeError("flaky"),
        Ack(),
    ]

    async def handler(message: Message) -> HandlerResult:
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    runner = Runner(services, make_spec(services, handler), rand=half)
    await runner.start()
    await publish(bus)
    await settle(bus)
    await runner.stop()
    # 2 parks < 3 and 2 failures < 3: neither budget ran out, so it was acked.
    assert results == []
    assert await drain(bus, bus.dlq_name) == []


# -- concurrency and shutdown ---------------------------------------------------------------------


async def test_concurrency_is_bounded(services: Services, bus: InMemoryBus) -> None:
    active = 0
    peak = 0
    gate = asyncio.Event()

    async def handler(message: Message) -> HandlerResult:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await gate.wait()
        active -= 1
        return Ack()

    runner = Runner(services, make_spec(services, handler, concurrency=2, prefetch=8), rand=half)
    await runner.start()
    for n in range(6):
        await publish(bus, str(n).encode())
    await spin()
    assert active == 2
    assert runner.in_flight == 6  # prefetched, four waiting for a slot
    gate.set()
    await settle(bus)
    await runner.stop()
    assert peak == 2
    assert runner.log.stats.count("success") == 6


async def test_prefetch_bounds_unacked_deliveries(services: Services, bus: InMemoryBus) -> None:
    gate = asyncio.Event()

    async def handler(message: Message) -> HandlerResult:
        await gate.wait()
        return Ack()

    runner = Runner(services, make_spec(services, handler, concurrency=8, prefetch=3), rand=half)
    await runner.start()
    for n in range(5):
        await publish(bus, str(n).encode())
    await spin()
    assert bus.pending()[QUEUE] == (2, 3, 0)
    gate.set()
    await settle(bus)
    await runner.stop()


async def test_shutdown_drains_finishes_what_it_can_and_requeues_the_rest(
    services: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    applied: Counter[bytes] = Counter()
    stuck = asyncio.Event()

    async def slow_handler(message: Message) -> HandlerResult:
        if message.body == b"stuck":
            stuck.set()
            await asyncio.Event().wait()  # never finishes: the shutdown must cancel it
        applied[message.body] += 1
        return Ack("TEST:SUCCESS")

    first = Runner(services, make_spec(services, slow_handler), rand=half)
    await first.start()
    await publish(bus, b"quick")
    await publish(bus, b"stuck")
    await stuck.wait()
    await first.stop(timeout_s=0.05)

    # The quick one was acked; the stuck one went back to the queue, unapplied.
    assert applied == Counter({b"quick": 1})
    assert bus.pending()[QUEUE] == (1, 0, 0)
    stopped = read_logs.one(FILE, "TEST:STOPPED")
    assert stopped.fields["requeued"] == "1"
    assert read_logs.tags(FILE)[-2:] == ["TEST:STOPPED", "STATS"]
    assert read_logs.find(FILE, "STATS")[-1].fields["success"] == "1"

    async def quick_handler(message: Message) -> HandlerResult:
        applied[message.body] += 1
        return Ack("TEST:SUCCESS")

    second = Runner(services, make_spec(services, quick_handler), rand=half)
    await second.start()
    await settle(bus)
    await second.stop()
    assert applied == Counter({b"quick": 1, b"stuck": 1})  # none lost, none twice
    assert await drain(bus, bus.dlq_name) == []


async def test_stats_lines_follow_the_cadence(
    settings: object, services: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    async def handler(message: Message) -> HandlerResult:
        return Ack("TEST:SUCCESS")

    runner = Runner(services, make_spec(services, handler), rand=half)
    runner.log.stats.every_n = 2
    runner.log.stats.take_line(force=True)  # restart the cadence with every_n=2
    await runner.start()
    for n in range(5):
        await publish(bus, str(n).encode())
    await settle(bus)
    await runner.stop()
    stats = read_logs.find(FILE, "STATS")
    assert [s.fields["processed"] for s in stats] == ["2", "4", "5"]  # the last one at stop
    services.logs.close()
    final = read_logs.find(FILE, "STATS")[-1]
    assert (final.fields["final"], final.fields["processed"]) == ("true", "5")
    assert {"p50_ms", "p95_ms", "p99_ms", "rate_per_min", "uptime_s"} <= set(stats[0].fields)


async def test_run_consumers_starts_and_stops_every_spec(
    services: Services, bus: InMemoryBus, read_logs: LogReader
) -> None:
    got: list[str] = []

    async def handler(message: Message) -> HandlerResult:
        got.append(message.queue)
        return Ack()

    specs = [
        make_spec(services, handler, queue="execflow.test.a", component="worker_open"),
        make_spec(services, handler, queue="execflow.test.b", component="worker_close"),
    ]
    stop = asyncio.Event()
    task = asyncio.create_task(run_consumers(services, specs, stop, rand=half))
    await spin()
    await bus.publish("execflow.test.a", b"1")
    await bus.publish("execflow.test.b", b"2")
    await settle(bus)
    stop.set()
    runners = await task
    assert sorted(got) == ["execflow.test.a", "execflow.test.b"]
    assert not any(r.running for r in runners)
    assert read_logs.tags("worker_close")[-2:] == ["TEST:STOPPED", "STATS"]


async def test_worker_outcomes_and_retries_reach_the_metrics(
    services: Services, bus: InMemoryBus
) -> None:
    metrics = Metrics("worker_open")
    with_metrics = replace(services, metrics=metrics)
    results: list[HandlerResult | Exception] = [RuntimeError("flaky"), Ack(), Park("too_early")]

    async def handler(message: Message) -> HandlerResult:
        result = results.pop(0) if results else Ack("TEST:SUCCESS")
        if isinstance(result, Exception):
            raise result
        return result

    spec = make_spec(with_metrics, handler, metrics_worker="open", concurrency=1)
    runner = Runner(with_metrics, spec, rand=half)
    await runner.start()
    await publish(bus, b"1")
    await settle(bus)
    await publish(bus, b"2")
    await settle(bus)
    await runner.stop()
    text = metrics.exposition().decode()
    assert 'execflow_retries_total{component="worker_open"} 1.0' in text
    assert 'execflow_worker_outcomes_total{component="worker_open",outcome="success"} 2.0' in text
    assert 'execflow_worker_outcomes_total{component="worker_open",outcome="parked"} 1.0' in text
    # declared at zero by the runner, before any failure
    assert 'execflow_worker_outcomes_total{component="worker_open",outcome="failure"} 0.0' in text
