"""The LP simulator on the bus: consumes provider requests, publishes execution reports.

The book (``execflow.sim.book``) decides what the LP answers; this shell adds what a
real venue does to the wire: latency, three encodings, duplicates (same exec_id twice),
reordering, malformed messages. Every report is published with confirms before the
request that caused it is acknowledged, so a crash re-delivers the request and the book
answers it again with the same exec_ids (no second order).
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import orjson

from execflow.backends.bus import H_MESSAGE_ID, H_TRACE_ID, Bus, Consumer, Delivery, OutgoingMessage
from execflow.clock import Clock, IdGenerator
from execflow.domain.codec import CodecError, request_from_dict
from execflow.domain.enums import ReportStatus
from execflow.domain.models import Quote
from execflow.errors import BusError
from execflow.logs.context import bind_trace, log_context
from execflow.logs.events import EventLogger
from execflow.sim.book import Answer, LpBook, Outgoing
from execflow.sim.config import LpConfig
from execflow.sim.feed import PriceFeed
from execflow.sim.wire import WireFormat, encode_report, malformed

__all__ = ["LpSimulator", "Sleep"]

Sleep = Callable[[float], Awaitable[None]]

_FORMATS = tuple(WireFormat)
_PUBLISH_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class _Wire:
    body: bytes
    message_id: str
    out: Outgoing | None
    note: str  # "report", "duplicate", "malformed:<variant>"


class LpSimulator:
    """Plays the LP: one consumer on ``provider_requests``, reports to ``reports``.

    ``on_answered`` gets the seconds from a request taken to its reports published
    (the simulated latency included), once per request answered.
    """

    def __init__(
        self,
        bus: Bus,
        feed: PriceFeed,
        log: EventLogger,
        config: LpConfig,
        rng: random.Random,
        clock: Clock,
        ids: IdGenerator,
        sleep: Sleep = asyncio.sleep,
        on_answered: Callable[[float], None] | None = None,
    ) -> None:
        self._bus = bus
        self._on_answered = on_answered
        self._feed = feed
        self._log = log
        self.config = config
        self._rng = rng
        self._sleep = sleep
        self.book = LpBook(config, rng, clock, ids, tick_of=self._tick_of)
        self._consumer: Consumer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = 0
        self._stopping = False
        feed.on_quotes(self._on_quotes)

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Declare the queues and start consuming provider requests."""
        names = self._bus.queues
        await self._bus.declare(names.reports)
        await self._bus.declare(names.provider_requests)
        self._stopping = False
        self._consumer = await self._bus.consume(
            names.provider_requests, self._handle, prefetch=self.config.prefetch
        )
        self._log.info(
            "SIM:STARTED", provider=self.config.provider, symbols=len(self._feed.symbols)
        )

    async def idle(self) -> None:
        """Wait until every report triggered by a price move has been published."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop consuming, then wait (bounded) for triggered reports still in flight."""
        self._stopping = True
        if self._consumer is not None:
            await self._consumer.stop(drain_timeout_s)
            self._consumer = None
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=drain_timeout_s)
        for task in list(self._tasks):
            task.cancel()
        self._log.info(
            "SIM:STOPPED",
            reports_sent=self._log.stats.count("reports_sent"),
            resting=self.book.resting_count(),
        )

    # -- requests -----------------------------------------------------------------------
    async def _handle(self, delivery: Delivery) -> None:
        # on the in-memory bus a handler task inherits the publisher's log context
        with log_context(component=None, instance=None, trace_id=None, order_id=None):
            await self._handle_request(delivery)

    async def _handle_request(self, delivery: Delivery) -> None:
        started = time.perf_counter()
        message = delivery.message
        trace_id = message.headers.get(H_TRACE_ID)
        try:
            request = request_from_dict(orjson.loads(message.body))
        except (orjson.JSONDecodeError, CodecError, TypeError) as exc:
            self._log.dead_lettered(
                "SIM:BAD_REQUEST", reason="bad_request", error=str(exc), trace_id=trace_id
            )
            await delivery.dead_letter("bad_request", str(exc))
            return
        answer = self.book.handle(request, self._feed.quote(request.symbol))
        if answer.resent:
            self._log.stats.incr("resent_requests")
            self._log.info(
                "SIM:DUPLICATE_REQUEST",
                order_id=request.order_id,
                lifecycle_id=request.lifecycle_id,
                kind=request.kind.value,
                trace_id=trace_id,
            )
        try:
            await self._send(answer, trace_id)
        except BusError as exc:
            self._log.failure(
                "SIM:ERROR",
                exc=exc,
                order_id=request.order_id,
                lifecycle_id=request.lifecycle_id,
                trace_id=trace_id,
            )
            # the book remembers the answer: the redelivered request re-sends the same reports
            await delivery.nack(requeue=True)
            return
        await delivery.ack()
        if self._on_answered is not None and answer.reports and not answer.resent:
            # the LP latency as this LP's gateway would see it: request taken to report out
            self._on_answered(time.perf_counter() - started)
        self._log.success(
            f"SIM:{answer.event}",
            processing_time_ms=round((time.perf_counter() - started) * 1000, 3),
            order_id=request.order_id,
            user=request.account_id,
            symbol=request.symbol,
            lifecycle_id=request.lifecycle_id,
            kind=request.kind.value,
            reports=len(answer.reports),
            trace_id=trace_id,
        )

    # -- price moves --------------------------------------------------------------------
    def _on_quotes(self, quotes: Sequence[Quote]) -> None:
        fills = self.book.on_quotes(quotes)
        if not fills:
            return
        context = contextvars.copy_context()
        context.run(bind_trace, component=None, instance=None, trace_id=None, order_id=None)
        task = asyncio.get_running_loop().create_task(self._send_triggered(fills), context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_triggered(self, fills: list[Outgoing]) -> None:
        for out in fills:
            if out.report.ord_status is ReportStatus.EXECUTED:
                self._log.stats.incr("triggered")
                self._log.info(
                    "SIM:TRIGGERED",
                    order_id=out.order_id,
                    lifecycle_id=out.report.lifecycle_id,
                    symbol=out.report.symbol,
                    avg_px=out.report.avg_px,
                )
        answer = Answer(tuple(fills), "TRIGGERED")
        for attempt in range(1, _PUBLISH_ATTEMPTS + 1):
            try:
                await self._send(answer, None)
                return
            except BusError as exc:
                if attempt == _PUBLISH_ATTEMPTS or self._stopping:
                    self._log.error("SIM:ERROR", exc=exc, reports=len(fills), attempts=attempt)
                    return
                self._log.retried("SIM:RETRY", attempt=attempt, error=str(exc))
                await asyncio.sleep(0.05 * 2**attempt)

    # -- the wire -----------------------------------------------------------------------
    async def _send(self, answer: Answer, trace_id: str | None) -> None:
        delay = self.config.latency.sample_s(self._rng)
        if delay > 0:
            await self._sleep(delay)
        wires = self._wires(answer)
        now, held = self._reorder(wires)
        await self._publish(now, trace_id)
        if held:
            window_s = self.config.reorder_window_ms / 1000.0
            if window_s > 0:
                await self._sleep(self._rng.uniform(0, window_s))
            await self._publish(held, trace_id)

    def _wires(self, answer: Answer) -> list[_Wire]:
        wires: list[_Wire] = []
        config = self.config
        for out in answer.reports:
            self._seq += 1
            fmt = _FORMATS[self._rng.randrange(len(_FORMATS))]
            exec_id = out.report.exec_id
            suffix = f"-r{self._seq}" if answer.resent else ""
            body = encode_report(out.report, fmt, self._seq)
            wires.append(_Wire(body, exec_id + suffix, out, fmt))
            if answer.resent:
                continue
            if self._draw(config.duplicate_rate):
                again = _FORMATS[self._rng.randrange(len(_FORMATS))]
                body = encode_report(out.report, again, self._seq)
                wires.append(_Wire(body, f"{exec_id}-dup", out, "duplicate"))
            if self._draw(config.malformed_rate):
                variant, body = malformed(out.report, self._rng)
                wires.append(_Wire(body, f"{exec_id}-bad", out, f"malformed:{variant}"))
        return wires

    def _reorder(self, wires: list[_Wire]) -> tuple[list[_Wire], list[_Wire]]:
        """Swap neighbours or hold some back, so that later messages overtake them."""
        if self.config.reorder_rate <= 0:
            return wires, []
        now: list[_Wire] = []
        held: list[_Wire] = []
        index = 0
        while index < len(wires):
            wire = wires[index]
            if self._draw(self.config.reorder_rate):
                self._log.stats.incr("reordered")
                if index + 1 < len(wires):
                    now.extend((wires[index + 1], wire))
                    index += 2
                    continue
                held.append(wire)
            else:
                now.append(wire)
            index += 1
        return now, held

    async def _publish(self, wires: list[_Wire], trace_id: str | None) -> None:
        if not wires:
            return
        queue = self._bus.queues.reports
        messages = []
        for wire in wires:
            headers = {H_MESSAGE_ID: wire.message_id, "provider": self.config.provider}
            if trace_id is not None:
                headers[H_TRACE_ID] = trace_id
            messages.append(OutgoingMessage(wire.body, headers, wire.message_id))
        await self._bus.publish_batch(queue, messages)
        for wire in wires:
            self._log_sent(wire, trace_id)

    def _log_sent(self, wire: _Wire, trace_id: str | None) -> None:
        out = wire.out
        if out is None:
            return
        report = out.report
        stats = self._log.stats
        if wire.note.startswith("malformed"):
            stats.incr("malformed_sent")
            self._log.info(
                "SIM:MALFORMED_SENT",
                order_id=out.order_id,
                variant=wire.note.partition(":")[2],
                message_id=wire.message_id,
            )
            return
        if wire.note == "duplicate":
            stats.incr("duplicates_sent")
            self._log.info("SIM:DUPLICATE_SENT", order_id=out.order_id, exec_id=report.exec_id)
            return
        stats.incr("reports_sent")
        stats.incr(f"status.{report.ord_status.value.lower()}")
        self._log.info(
            "SIM:REPORT_SENT",
            order_id=out.order_id,
            lifecycle_id=report.lifecycle_id,
            exec_id=report.exec_id,
            status=report.ord_status.value,
            wire=wire.note,
            cum_qty=report.cum_qty,
            avg_px=report.avg_px,
            reason=report.reason,
            request_trace_id=trace_id,
        )

    def _draw(self, share: float) -> bool:
        return share > 0 and self._rng.random() < share

    def _tick_of(self, symbol: str) -> Decimal:
        spec = self._feed.spec(symbol)
        return spec.tick if spec is not None else Decimal("0.00001")
