"""The one consumer loop of execflow: dispatcher, seven workers and db writer all run here.

Per delivery the runner binds the log context (component, instance, trace_id,
order_id), waits for a concurrency slot, calls the handler, and settles the delivery
from what the handler returned (``results``):

* ``Ack``        -> ack, then the outcome line (``SUCCESS`` / ``SKIP:*`` / ``ROUTED`` ...).
* ``Park``       -> ``retry_later`` with the park backoff and a ``PARKED`` line; after the
                    park policy's attempts -> DLQ (``precondition_timeout`` or the given reason).
* ``DeadLetter`` -> DLQ with reason and error, ``DLQ`` line at the result's level.
* an exception   -> ``retry_later`` with the retry backoff and a ``RETRY`` line; when the
                    exception is non-retryable or the attempts are used up -> DLQ with the
                    error (``DLQ`` at WARNING + ``FAILED`` at ERROR with the traceback).
* an outage      -> (the state store unreachable: ``RetryPolicy.outages``) ``retry_later``
                    with the backoff for as long as it lasts, never the DLQ. Before it
                    handles the next message, the state check hook rebuilds the state from
                    the database if the store came back empty (a Redis restart without
                    persistence; ``STATE:FALLBACK`` / ``STATE:REBUILT``), once the db
                    writer has written every event published before (``dbfence``).

What else runs around each message is a hook (``hooks``): the state-store check before
the handler, the Prometheus counters after the settle.

Settling runs under ``asyncio.shield``: a shutdown never cuts it between the DLQ publish
and the ack. (An ``Ack`` on a delivery whose ack never suspends, ``bus.ACK_NEVER_SUSPENDS``,
is settled inline: nothing can cut it, and a task per message is not paid for.) The
handler has committed its state and had its publishes confirmed before it returned, so
an ack always follows the durable effect. A handler cancelled by a shutdown leaves its
delivery unsettled and the bus returns it to the queue.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from execflow.backends.bus import ACK_NEVER_SUSPENDS, H_TRACE_ID, Consumer, Delivery, Message
from execflow.logs.context import log_context
from execflow.logs.events import ERROR, EventLogger
from execflow.pipeline.hooks import Outcome, RunnerHook, default_hooks
from execflow.pipeline.results import Ack, DeadLetter, HandlerResult, Park
from execflow.pipeline.retry import H_CONFLICTS, H_OUTAGES, H_PARKS, H_RETRIES, RetryPolicy
from execflow.pipeline.services import Services

__all__ = [
    "H_ORDER_ID",
    "Ack",
    "ConsumerSpec",
    "DeadLetter",
    "Handler",
    "HandlerResult",
    "Park",
    "RetryPolicy",
    "Runner",
    "error_text",
    "run_consumers",
]

H_ORDER_ID = "order_id"
"""Header carrying the order a message is about (bound as ``order_id`` in the log context)."""

_MAX_ERROR_CHARS = 2000

Handler = Callable[[Message], Awaitable[HandlerResult]]
"""A consumer's business logic: one message in, one settle decision out."""


def _default_park() -> RetryPolicy:
    return RetryPolicy(max_attempts=8, exhausted_reason="precondition_timeout")


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A consumer declared as data: what it reads, how wide, how it retries.

    ``component`` names its log file and stats (``worker_open``); ``tag`` prefixes the
    runner's event tags (``OPEN:RETRY``); ``metrics_worker`` (workers only) makes the
    runner count outcomes (``Metrics.worker_outcome``, labelled by ``component`` too).
    """

    component: str
    queue: str
    handler: Handler
    tag: str
    prefetch: int = 64
    concurrency: int = 16
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    park: RetryPolicy = field(default_factory=_default_park)
    metrics_worker: str | None = None

    def __post_init__(self) -> None:
        if self.prefetch < 1 or self.concurrency < 1:
            raise ValueError("prefetch and concurrency must be >= 1")


@dataclass(frozen=True, slots=True)
class _Failed:
    """The handler raised: retry or dead-letter, decided by the retry policy."""

    exc: Exception


def error_text(exc: BaseException) -> str:
    """``Type: message`` of an exception, bounded (for the DLQ's ``x-error`` header)."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def _count(headers: Mapping[str, str], name: str) -> int:
    try:
        return max(0, int(headers.get(name, "0")))
    except ValueError:
        return 0


class Runner:
    """Runs one ``ConsumerSpec`` against the bus until stopped."""

    def __init__(
        self,
        services: Services,
        spec: ConsumerSpec,
        *,
        rand: Callable[[], float] | None = None,
        hooks: Sequence[RunnerHook] | None = None,
    ) -> None:
        self.services = services
        self.spec = spec
        self.log: EventLogger = services.logger(spec.component)
        self._rand = rand or random.Random().random
        self._hooks = tuple(
            default_hooks(services, self.log, spec.component, spec.metrics_worker)
            if hooks is None
            else hooks
        )
        self._clock = services.clock
        self._slots = asyncio.Semaphore(spec.concurrency)
        self._consumer: Consumer | None = None
        self._settles: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._interrupted = 0

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._consumer is not None

    @property
    def in_flight(self) -> int:
        """Deliveries being handled or waiting for a concurrency slot."""
        return self._in_flight

    async def start(self) -> None:
        """Declare the queue and start consuming (idempotent)."""
        if self._consumer is not None:
            return
        spec = self.spec
        await self.services.bus.declare(spec.queue)
        self._consumer = await self.services.bus.consume(
            spec.queue, self._on_delivery, prefetch=spec.prefetch
        )
        self.log.info(
            f"{spec.tag}:STARTED",
            queue=spec.queue,
            prefetch=spec.prefetch,
            concurrency=spec.concurrency,
            max_attempts=spec.retry.max_attempts,
            park_max_attempts=spec.park.max_attempts,
        )

    async def stop(self, timeout_s: float | None = None) -> None:
        """Stop intake, drain in-flight work for ``timeout_s``, requeue the rest, STATS line.

        ``timeout_s`` defaults to ``settings.shutdown_timeout_s``.
        """
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        drain_s = self.services.settings.shutdown_timeout_s if timeout_s is None else timeout_s
        in_flight = self._in_flight
        interrupted_before = self._interrupted
        await consumer.stop(drain_timeout_s=drain_s)
        if self._settles:
            await asyncio.wait(set(self._settles))
        self.log.info(
            f"{self.spec.tag}:STOPPED",
            queue=self.spec.queue,
            in_flight_at_stop=in_flight,
            requeued=self._interrupted - interrupted_before,
            drain_timeout_s=drain_s,
        )
        # A checkpoint of this consumer's counters; the ``final=true`` line is written
        # once per process, when the entry point closes the logging layer.
        self.log.emit_stats(force=True)

    async def serve(self, stop: asyncio.Event) -> None:
        """Start, run until ``stop`` is set, then stop in order."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    # -- one delivery -------------------------------------------------------------------
    async def _on_delivery(self, delivery: Delivery) -> None:
        message = delivery.message
        self._in_flight += 1
        try:
            with log_context(**self._context(message)):
                async with self._slots:
                    started = self._clock.monotonic()
                    result: HandlerResult | _Failed
                    try:
                        for hook in self._hooks:
                            await hook.before()
                        result = await self.spec.handler(message)
                    except Exception as exc:  # noqa: BLE001 - retried or dead-lettered, logged
                        for hook in self._hooks:
                            hook.raised(exc)
                        result = _Failed(exc)
                    await self._settle_shielded(delivery, result, started)
        except asyncio.CancelledError:
            # Unsettled: the bus returns the message to its queue.
            self._interrupted += 1
            raise
        finally:
            self._in_flight -= 1

    def _context(self, message: Message) -> dict[str, Any]:
        headers = message.headers
        return {
            "component": self.spec.component,
            "instance": self.services.instance,
            "order_id": headers.get(H_ORDER_ID),
            "trace_id": headers.get(H_TRACE_ID),
        }

    async def _settle_shielded(
        self, delivery: Delivery, result: HandlerResult | _Failed, started: float
    ) -> None:
        if result.__class__ is Ack and getattr(delivery, ACK_NEVER_SUSPENDS, False):
            # An ack with no await in it cannot be cut by a cancellation (one arrives only
            # at a suspension): settled here, without the task and shield below, which
            # cost ~0.21 M instructions a fill report on the in-memory bus.
            await self._settle(delivery, result, started)
            return
        task = asyncio.create_task(self._settle(delivery, result, started))
        self._settles.add(task)
        task.add_done_callback(self._settles.discard)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # Let the settle finish: cutting it between DLQ publish and ack duplicates.
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                self.log.error(f"{self.spec.tag}:ERROR", exc=task.exception(), stage="settle")
            raise

    async def _settle(
        self, delivery: Delivery, result: HandlerResult | _Failed, started: float
    ) -> None:
        try:
            if isinstance(result, Ack):
                await delivery.ack()
                self._acked(result, self._elapsed_ms(started))
            elif isinstance(result, Park):
                await self._park(delivery, result, started)
            elif isinstance(result, DeadLetter):
                await delivery.dead_letter(result.reason, result.error, result.body)
                self._dead_lettered(
                    result.reason, self._elapsed_ms(started), result.level, result.fields
                )
            else:
                await self._failed(delivery, result.exc, started)
        except Exception as exc:
            # The bus could not settle (connection lost): it returns the message itself.
            self.log.failure(f"{self.spec.tag}:ERROR", exc=exc, stage="settle")
            raise

    async def _park(self, delivery: Delivery, result: Park, started: float) -> None:
        policy = self.spec.park
        parks = _count(delivery.message.headers, H_PARKS) + 1
        if policy.exhausted(parks):
            reason = result.exhausted_reason or policy.exhausted_reason
            await delivery.dead_letter(reason, result.reason)
            fields = {**result.fields, "park_reason": result.reason, "parks": parks}
            self._dead_lettered(reason, self._elapsed_ms(started), ERROR, fields)
            return
        delay_s = round(policy.delay_s(parks, self._rand()), 3)
        await delivery.retry_later(delay_s, {H_PARKS: str(parks)})
        elapsed_ms = self._elapsed_ms(started)
        self.log.parked(
            f"{self.spec.tag}:PARKED",
            **result.fields,
            reason=result.reason,
            attempt=parks,
            max_attempts=policy.max_attempts,
            delay_s=delay_s,
            processing_time_ms=elapsed_ms,
        )
        self._settled("parked", elapsed_ms)

    async def _failed(self, delivery: Delivery, exc: Exception, started: float) -> None:
        policy = self.spec.retry
        if policy.is_outage(exc):
            await self._uncounted(delivery, exc, started, H_OUTAGES, "outage")
            return
        contended = policy.is_contention(exc)
        if contended and _count(delivery.message.headers, H_CONFLICTS) < policy.max_contentions:
            await self._uncounted(delivery, exc, started, H_CONFLICTS, "contention")
            return
        attempt = _count(delivery.message.headers, H_RETRIES) + 1
        reason = policy.non_retryable_reason(exc)
        if reason is None and (contended or policy.exhausted(attempt)):
            reason = policy.exhausted_reason
        if reason is not None:
            await delivery.dead_letter(reason, error_text(exc))
            elapsed_ms = self._elapsed_ms(started)
            self._dead_lettered(reason, elapsed_ms, None, {"attempts": attempt})
            self.log.error(
                f"{self.spec.tag}:FAILED",
                exc=exc,
                reason=reason,
                attempts=attempt,
                queue=self.spec.queue,
            )
            return
        delay_s = round(policy.delay_s(attempt, self._rand()), 3)
        await delivery.retry_later(delay_s, {H_RETRIES: str(attempt)})
        self.log.retried(
            f"{self.spec.tag}:RETRY",
            attempt=attempt,
            max_attempts=policy.max_attempts,
            delay_s=delay_s,
            error_type=type(exc).__name__,
            error=error_text(exc),
        )
        self._settled("retried", self._elapsed_ms(started))

    async def _uncounted(
        self, delivery: Delivery, exc: Exception, started: float, header: str, why: str
    ) -> None:
        """Back off without using an attempt: the message is fine, but a backend is away
        (``outage``, counted in ``outages``) or other writers kept winning its account
        (``contention``, counted in ``contentions``)."""
        policy = self.spec.retry
        times = _count(delivery.message.headers, header) + 1
        delay_s = round(policy.delay_s(times, self._rand()), 3)
        await delivery.retry_later(delay_s, {header: str(times)})
        self.log.retried(
            f"{self.spec.tag}:RETRY",
            **{why: True, f"{why}s": times},
            delay_s=delay_s,
            error_type=type(exc).__name__,
            error=error_text(exc),
        )
        self._settled("retried", self._elapsed_ms(started))

    # -- outcome lines and counters --------------------------------------------------------
    def _elapsed_ms(self, started: float) -> float:
        return round((self._clock.monotonic() - started) * 1000.0, 3)

    def _acked(self, result: Ack, elapsed_ms: float) -> None:
        log = self.log
        if result.outcome == "success":
            if result.tag is not None:
                log.success(result.tag, processing_time_ms=elapsed_ms, **result.fields)
            elif log.stats.record_success(elapsed_ms):
                log.emit_stats()
        else:
            due = log.stats.record("skipped", elapsed_ms)
            if result.tag is not None:
                log.event(result.level, result.tag, **result.fields, processing_time_ms=elapsed_ms)
            if due:
                log.emit_stats()
        self._settled(result.outcome, elapsed_ms)

    def _dead_lettered(
        self, reason: str, elapsed_ms: float, level: int | None, fields: Mapping[str, Any]
    ) -> None:
        tag = f"{self.spec.tag}:DLQ"
        line = {**fields, "processing_time_ms": elapsed_ms}
        if level is None or level < ERROR:
            self.log.dead_lettered(tag, reason=reason, **line)
        else:
            # One ERROR line (counted once), copied to provider_errors.log for review.
            stats = self.log.stats
            stats.incr(f"dlq.{reason}")
            due = stats.record("dead_lettered", elapsed_ms)
            self.log.event(level, tag, reason=reason, **line)
            if due:
                self.log.emit_stats()
        self._settled("dead_lettered", elapsed_ms, reason)

    def _settled(self, outcome: Outcome, elapsed_ms: float, reason: str | None = None) -> None:
        for hook in self._hooks:
            hook.settled(outcome, elapsed_ms, reason)


async def run_consumers(
    services: Services,
    specs: Sequence[ConsumerSpec],
    stop: asyncio.Event,
    *,
    rand: Callable[[], float] | None = None,
) -> list[Runner]:
    """Start a runner per spec, wait for ``stop``, then stop them all (drained together).

    Returns the runners (stopped) so a caller can read their stats.
    """
    runners = [Runner(services, spec, rand=rand) for spec in specs]
    started: list[Runner] = []
    try:
        for runner in runners:
            await runner.start()
            started.append(runner)
        await stop.wait()
    finally:
        timeout_s = services.settings.shutdown_timeout_s
        await asyncio.gather(*(runner.stop(timeout_s) for runner in started))
    return runners
