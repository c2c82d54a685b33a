"""The simulated LP as a FIX 4.4 acceptor (``execflow simulate --fix-port N``).

The same book (``execflow.sim.book``) and price feed as the bus simulator, the same chaos
knobs (latency, rejects, partial fills, duplicates, reordering, malformed messages),
served on 127.0.0.1 through QuickFIX, plus market data: a MarketDataRequest (V) gets a
snapshot (W) per symbol, then an incremental refresh (X) after every price step.

Requests arrive on the engine's thread and are handed to the event loop (in batches,
``execflow.gateway.handover``), where the book answers them; reports are sent back
through ``Session.sendToTarget`` on the loop's thread (as the gateway sends, see
``LpGateway._send``), in the order the book made them (except where reordering is asked
for). The engine logs in C++ as the gateway's does (``execflow.gateway.eventlog``: no
call into Python per message, as a real LP's native engine), its events as
``SIM:FIX_EVENT`` lines (its directory, only links and a pipe, is a temporary one,
removed at the stop).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import quickfix as fix

from execflow.clock import Clock, IdGenerator
from execflow.domain.enums import ReportStatus
from execflow.domain.models import Quote
from execflow.gateway import engine
from execflow.gateway.eventlog import NativeLogFactory
from execflow.gateway.fixmap import (
    CANCEL,
    CANCEL_REJECT,
    NEW_ORDER,
    REPLACE,
    Fields,
    cancel_reject_fields,
    first,
    parse_fields,
    report_fields,
    request_from_fields,
)
from execflow.gateway.handover import Handover
from execflow.logs.events import EventLogger
from execflow.sim.book import Answer, LpBook, Outgoing
from execflow.sim.config import LpConfig
from execflow.sim.feed import DEFAULT_SYMBOLS, PriceFeed, SymbolSpec

__all__ = ["FixLpServer", "FixLpSession", "FixSimulator"]

_ORDER_MESSAGES = frozenset({NEW_ORDER, CANCEL, REPLACE})


@dataclass(frozen=True, slots=True)
class FixLpSession:
    """Where the simulated LP listens and who it is (its CompIDs are the gateway's reversed)."""

    port: int
    sender_comp_id: str = "SIMLP"
    target_comp_id: str = "EXECFLOW"
    heartbeat_s: int = 30
    password: str | None = None
    store_dir: Path | None = None


class FixLpServer:
    """A FIX acceptor playing the LP with an ``LpBook``; quotes from a ``PriceFeed``."""

    def __init__(
        self,
        feed: PriceFeed,
        log: EventLogger,
        config: LpConfig,
        session: FixLpSession,
        rng: random.Random,
        clock: Clock,
        ids: IdGenerator,
    ) -> None:
        self._feed = feed
        self._log = log
        self.config = config
        self.session = session
        self._rng = rng
        self.book = LpBook(config, rng, clock, ids, tick_of=self._tick_of)
        self._session_id = fix.SessionID(
            engine.BEGIN_STRING, session.sender_comp_id, session.target_comp_id
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._acceptor: Any = None
        self._dictionary: Any = None
        self._handover: Handover | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscribed: dict[str, str] = {}  # symbol -> MDReqID
        self._md_seq = 0
        self.logged_on = asyncio.Event()
        self.received: list[str] = []  # ClOrdIDs of every order message, in arrival order
        self.reports_sent = 0  # 8s and 9s handed to the engine (the gateway's to read)
        self._app = _LpApplication(self)
        self._log_factory: NativeLogFactory | None = None
        self._log_tmp: Path | None = None  # the engine log's directory (made at the start)
        feed.on_quotes(self._on_quotes)

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Listen on 127.0.0.1:port."""
        self._loop = asyncio.get_running_loop()
        self._handover = Handover(self._loop)
        dictionary_path = engine.data_dictionary()
        ini = engine.session_ini(
            connection="acceptor",
            sender_comp_id=self.session.sender_comp_id,
            target_comp_id=self.session.target_comp_id,
            store_dir=self.session.store_dir,
            dictionary=dictionary_path,
            heartbeat_s=self.session.heartbeat_s,
            port=self.session.port,
        )
        self._dictionary = fix.DataDictionary(str(dictionary_path))
        settings = engine.engine_settings(ini)
        if self.session.store_dir is not None:
            store: Any = fix.FileStoreFactory(settings)
        else:
            store = fix.MemoryStoreFactory()
        # the log's directory holds only links and the events' pipe: nothing to keep
        self._log_tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="execflow-simlp-"))
        self._log_factory = NativeLogFactory(self._on_engine_event, self._log_tmp)
        await asyncio.to_thread(self._log_factory.open)
        # the threaded acceptor: SocketAcceptor's stop races its own thread (QuickFIX 1.16
        # closes the server's sockets while that thread deletes the server: a segfault)
        self._acceptor = fix.ThreadedSocketAcceptor(self._app, store, settings, self._log_factory)
        await asyncio.to_thread(self._acceptor.start)
        self._log.info(
            "SIM:FIX_LISTENING",
            port=self.session.port,
            sender_comp_id=self.session.sender_comp_id,
            provider=self.config.provider,
        )

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Send what is in flight (bounded), then log out and close the port."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=drain_timeout_s)
        for task in list(self._tasks):
            task.cancel()
        if self._acceptor is not None:
            await asyncio.to_thread(self._acceptor.stop)
            self._acceptor = None
        if self._log_factory is not None:
            await asyncio.to_thread(self._log_factory.close)  # the engine's last events
            self._log_factory = None
        if self._log_tmp is not None:
            await asyncio.to_thread(shutil.rmtree, self._log_tmp, ignore_errors=True)
            self._log_tmp = None
        self._log.info(
            "SIM:STOPPED",
            reports_sent=self._log.stats.count("reports_sent"),
            resting=self.book.resting_count(),
        )

    async def idle(self) -> None:
        """Wait until every answer and triggered fill has been sent."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- engine callbacks (engine thread) -----------------------------------------------
    def engine_logon(self, up: bool) -> None:
        """The gateway logged on (or off)."""
        self._log.info("SIM:FIX_LOGON" if up else "SIM:FIX_LOGOUT")
        self._call_soon(self.logged_on.set if up else self._logged_off)

    def engine_received(self, msg_type: str, fields: Fields) -> None:
        """An application message from the gateway; answered on the loop."""
        self._call_soon(self._on_message, msg_type, fields)

    def check_logon(self, fields: Fields) -> str | None:
        """The refusal text when the Logon's password is wrong, else None."""
        expected = self.session.password
        if expected is not None and first(fields, 554) != expected:
            return "invalid username or password"
        return None

    def _on_engine_event(self, text: str) -> None:
        self._log.debug("SIM:FIX_EVENT", text=text)

    def _call_soon(self, callback: Any, *args: object) -> None:
        if self._handover is not None:
            self._handover.call(callback, *args)

    # -- on the loop --------------------------------------------------------------------
    def _logged_off(self) -> None:
        self.logged_on.clear()
        self._subscribed.clear()

    def _on_message(self, msg_type: str, fields: Fields) -> None:
        if msg_type == "V":
            self._subscribe(fields)
            return
        if msg_type not in _ORDER_MESSAGES:
            return
        self.received.append(first(fields, 11) or "")
        try:
            request = request_from_fields(msg_type, fields)
        except (ValueError, ArithmeticError) as exc:
            self._log.warning("SIM:BAD_REQUEST", msg_type=msg_type, error=str(exc))
            return
        answer = self.book.handle(request, self._feed.quote(request.symbol))
        if answer.resent:
            self._log.stats.incr("resent_requests")
            self._log.info(
                "SIM:DUPLICATE_REQUEST",
                order_id=request.order_id,
                lifecycle_id=request.lifecycle_id,
                kind=request.kind.value,
            )
            # the ClOrdID was answered already: a re-sent order is never a second order
            return
        self._log.info(
            f"SIM:{answer.event}",
            order_id=request.order_id,
            lifecycle_id=request.lifecycle_id,
            kind=request.kind.value,
            reports=len(answer.reports),
        )
        self._spawn(self._send_answer(answer, msg_type))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_quotes(self, quotes: Sequence[Quote]) -> None:
        fills = self.book.on_quotes(quotes)
        if fills:
            for out in fills:
                if out.report.ord_status is ReportStatus.EXECUTED:
                    self._log.stats.incr("triggered")
            self._spawn(self._send_answer(Answer(tuple(fills), "TRIGGERED")))
        if self._subscribed and self.logged_on.is_set():
            self._spawn(self._send_incremental(list(quotes)))

    def _subscribe(self, fields: Fields) -> None:
        request_id = first(fields, 262) or "md"
        symbols = [value for tag, value in fields if tag == 55]
        for symbol in symbols:
            self._subscribed[symbol] = request_id
        self._log.info("SIM:MD_SUBSCRIBED", symbols=len(symbols), request_id=request_id)
        quotes = [q for s in symbols if (q := self._feed.quote(s)) is not None]
        self._spawn(self._send_snapshots(quotes, request_id))

    # -- the wire -----------------------------------------------------------------------
    async def _send_answer(self, answer: Answer, request_type: str = NEW_ORDER) -> None:
        delay = self.config.latency.sample_s(self._rng)
        if delay > 0:
            await asyncio.sleep(delay)
        wires = self._wires(answer, request_type)
        if self.config.reorder_rate > 0 and len(wires) > 1:
            for index in range(len(wires) - 1):
                if self._draw(self.config.reorder_rate):
                    self._log.stats.incr("reordered")
                    wires[index], wires[index + 1] = wires[index + 1], wires[index]
        for note, out, msg_type, body in wires:
            self._send(msg_type, body)
            self.reports_sent += 1
            self._log_sent(note, out)

    def _wires(self, answer: Answer, request_type: str) -> list[tuple[str, Outgoing, str, Fields]]:
        wires: list[tuple[str, Outgoing, str, Fields]] = []
        for out in answer.reports:
            if request_type != NEW_ORDER and out.report.ord_status is ReportStatus.REJECTED:
                # a venue refuses a cancel or replace with OrderCancelReject, not an 8
                body = cancel_reject_fields(out.report, request_type)
                wires.append(("report", out, CANCEL_REJECT, body))
                if self._draw(self.config.duplicate_rate):
                    wires.append(("duplicate", out, CANCEL_REJECT, body))
                continue
            wires.append(("report", out, "8", report_fields(out.report)))
            if self._draw(self.config.duplicate_rate):
                wires.append(("duplicate", out, "8", report_fields(out.report)))
            if self._draw(self.config.malformed_rate):
                # valid FIX, but a price no report may carry: the pipeline's normaliser
                # refuses it (DLQ malformed_report); the real report was sent as well
                bad = replace(out.report, exec_id=out.report.exec_id + "-bad", avg_px=Decimal(-1))
                wires.append(("malformed", out, "8", report_fields(bad)))
        return wires

    async def _send_snapshots(self, quotes: list[Quote], request_id: str) -> None:
        for quote in quotes:
            body: Fields = [(262, request_id), (55, quote.symbol), (268, "2")]
            body += [(269, "0"), (270, format(quote.bid, "f"))]
            body += [(269, "1"), (270, format(quote.ask, "f"))]
            self._send("W", body)

    async def _send_incremental(self, quotes: list[Quote]) -> None:
        chosen = [q for q in quotes if q.symbol in self._subscribed]
        if not chosen:
            return
        body: Fields = [(268, str(2 * len(chosen)))]
        for quote in chosen:
            for entry_type, price in (("0", quote.bid), ("1", quote.ask)):
                body += [(279, "1"), (269, entry_type), (55, quote.symbol)]
                body.append((270, format(price, "f")))
        self._send("X", body)

    def _send(self, msg_type: str, body: Fields) -> bool:
        """Hand one message to the engine on the loop's thread (as the gateway does)."""
        message = engine.fields_message(msg_type, body, self._dictionary)
        return bool(fix.Session.sendToTarget(message, self._session_id))

    def _log_sent(self, note: str, out: Outgoing) -> None:
        report = out.report
        stats = self._log.stats
        if note != "report":
            stats.incr(f"{note}s_sent")
            self._log.info(
                f"SIM:{note.upper()}_SENT", order_id=out.order_id, exec_id=report.exec_id
            )
            return
        stats.incr("reports_sent")
        stats.incr(f"status.{report.ord_status.value.lower()}")
        self._log.info(
            "SIM:REPORT_SENT",
            order_id=out.order_id,
            lifecycle_id=report.lifecycle_id,
            exec_id=report.exec_id,
            status=report.ord_status.value,
            wire="fix",
            cum_qty=report.cum_qty,
            avg_px=report.avg_px,
            reason=report.reason,
        )

    def _draw(self, share: float) -> bool:
        return share > 0 and self._rng.random() < share

    def _tick_of(self, symbol: str) -> Decimal:
        spec = self._feed.spec(symbol)
        return spec.tick if spec is not None else Decimal("0.00001")


async def _nowhere(_symbol: str, _data: dict[str, Any]) -> None:
    """An LP's feed writes to no state store: quotes reach it as the gateway's market data."""


class FixSimulator:
    """Feed ticking on a timer + the FIX LP acceptor: ``execflow simulate --fix-port``."""

    def __init__(
        self,
        log: EventLogger,
        config: LpConfig,
        session: FixLpSession,
        clock: Clock,
        ids: IdGenerator,
        *,
        seed: int = 1,
        symbols: Sequence[SymbolSpec] = DEFAULT_SYMBOLS,
        tick_interval_s: float = 0.02,
    ) -> None:
        self.feed = PriceFeed(symbols, _nowhere, random.Random(seed), clock)
        self.lp = FixLpServer(self.feed, log, config, session, random.Random(seed + 1), clock, ids)
        self._interval_s = tick_interval_s
        self._stop = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen, then tick the feed."""
        await self.lp.start()
        self._stop.clear()
        self._ticker = asyncio.create_task(
            self.feed.run(self._interval_s, self._stop), name="sim-feed"
        )

    async def stop_feed(self) -> None:
        """Stop ticking (no more price moves, so no more triggered fills)."""
        self._stop.set()
        if self._ticker is not None:
            await self._ticker
            self._ticker = None

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop the feed, then the acceptor."""
        await self.stop_feed()
        await self.lp.stop(drain_timeout_s)


class _LpApplication(fix.Application):  # type: ignore[misc]
    """The acceptor's callbacks; errors are logged, never raised into the engine."""

    def __init__(self, server: FixLpServer) -> None:
        super().__init__()
        self._server = server

    def onCreate(self, session_id: Any) -> None:
        return None

    def onLogon(self, session_id: Any) -> None:
        self._server.engine_logon(True)

    def onLogout(self, session_id: Any) -> None:
        self._server.engine_logon(False)
        engine.let_thread_state_go()

    def toAdmin(self, message: Any, session_id: Any) -> None:
        return None

    def toApp(self, message: Any, session_id: Any) -> None:
        return None

    def fromAdmin(self, message: Any, session_id: Any) -> None:
        msg_type, fields = parse_fields(message.toString())
        if msg_type == engine.LOGON:
            refusal = self._server.check_logon(fields)
            if refusal is not None:
                raise fix.RejectLogon(refusal)

    def fromApp(self, message: Any, session_id: Any) -> None:
        engine.keep_thread_state()  # an application message: the session is logged on
        msg_type, fields = parse_fields(message.toString())
        self._server.engine_received(msg_type, fields)
