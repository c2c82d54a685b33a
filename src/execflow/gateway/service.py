"""One LP's FIX session on the bus: provider requests out, reports and quotes in (DESIGN §10).

Threads: QuickFIX calls back on its own threads. A report the LP sends is appended to
the gateway's report journal (flushed) inside the engine's callback and handed to the
event loop, which publishes the waiting reports to ``reports`` in batches with confirms
(``execflow.gateway.publisher``). QuickFIX increments the expected incoming sequence
number (and persists it in the file store) only after the callback returns, so every
message the engine counted is on disk: a gateway that dies before publishing it
publishes it from the journal at its next start, and one that dies before journaling it
has not counted it (on the next logon the LP's higher sequence number opens a gap, the
engine asks for a resend, and the LP sends it again, PossDup). The dispatcher's exec_id
ledger applies a copy once. If the journal cannot take a message, the gateway ends the
process rather than return from the callback (a return would count the message as
processed): ``LPGW:ABANDONED`` is the one CRITICAL line it writes first.

Requests: a provider request is sent with ``Session.sendToTarget`` (which stores it in
the file store, then writes it to the socket) and acknowledged on the bus only after
that returned; requests wait (unacknowledged) while the session is logged out.
ClOrdID is the lifecycle id, so a request delivered again after a crash reaches the LP
as the same order, never a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson
import quickfix as fix

from execflow.backends.bus import Consumer, Delivery
from execflow.backends.lp_store import LpExecutionStore
from execflow.backends.sql import SqlDatabase
from execflow.backends.sql_lp import SqlLpExecutionStore
from execflow.domain.codec import CodecError, instrument_from_dict, request_from_dict
from execflow.domain.lpquality import new_execution
from execflow.domain.messages import ProviderRequest
from execflow.domain.models import InstrumentConfig, Prices, Quote
from execflow.domain.money import USD
from execflow.errors import ConfigError, ExecflowError
from execflow.gateway import engine
from execflow.gateway.eventlog import NativeLogFactory
from execflow.gateway.executions import ExecutionWriter
from execflow.gateway.fixmap import (
    REPORT_TYPES,
    SESSION_REJECT,
    Fields,
    SentRef,
    first,
    market_data_request,
    parse_fields,
    quote_updates,
    request_fields,
)
from execflow.gateway.handover import Handover
from execflow.gateway.journal import ReportJournal
from execflow.gateway.ledger import SentLedger
from execflow.gateway.publisher import ReportPublisher
from execflow.gateway.quality import QualityRecorder
from execflow.gateway.quotes import QuoteWriter
from execflow.gateway.storedir import DirectoryWatch
from execflow.logs.events import EventLogger
from execflow.logs.masking import MASK
from execflow.pipeline.services import Services
from execflow.settings import LpSession

__all__ = ["EXIT_ABANDONED", "LpGateway"]

EXIT_ABANDONED = 70
"""Exit status when a received report could not be kept in the journal."""

_SENT_KEPT = 50_000
_PRICES_MAX_AGE_S = 5.0
_WARN_EVENTS = ("reject", "invalid", "fail", "too low", "too high", "disconnect", "timed out")


class LpGateway:
    """The FIX 4.4 initiator of one LP, bridged to the bus and the state store."""

    def __init__(
        self,
        services: Services,
        name: str,
        session: LpSession,
        *,
        log: EventLogger | None = None,
        requests_queue: str | None = None,
        exit_process: Callable[[int], None] = os._exit,
        executions: LpExecutionStore | None = None,
    ) -> None:
        self.services = services
        self.name = name
        self.session = session
        self.log = log or services.logger("lp_gateway")
        routed = services.settings.lp_routing.enabled
        self.requests_queue = requests_queue or services.queues.provider_requests_of(
            name if routed else None
        )
        self._exit = exit_process
        self._loop: asyncio.AbstractEventLoop | None = None
        self._initiator: Any = None
        self._engine_session: Any = None  # the initiator's session (see ``start``)
        self._dictionary: Any = None
        self._session_id = fix.SessionID(
            engine.BEGIN_STRING, session.sender_comp_id, session.target_comp_id
        )
        self._consumer: Consumer | None = None
        self.logged_on = asyncio.Event()
        self._stopping = False
        self._handover: Handover | None = None
        self._refused_reports = 0  # reports our engine refused at session level
        self._sent: OrderedDict[int, SentRef] = OrderedDict()
        store = executions
        if store is None and isinstance(services.database, SqlDatabase):
            store = SqlLpExecutionStore(services.database)
        self.executions = ExecutionWriter(store, self.log) if store is not None else None
        self.quality = QualityRecorder(
            name, self.log, services.metrics, self.executions, store.get if store else None
        )
        self._instruments: dict[tuple[str, str], InstrumentConfig | None] = {}
        self._prices: tuple[float, Prices] | None = None  # (read at, monotonic), state store
        self._md_requests = 0
        self._ledger: SentLedger | None = None
        self._session_up = False  # read on engine threads: the engine's own view
        self._failures = 0
        self._resume_at: asyncio.TimerHandle | None = None
        self.store_lost = asyncio.Event()
        """Set when the store directory went away under the session (``gateway.storedir``)."""
        self._store_watch: asyncio.Task[None] | None = None
        self.quotes = QuoteWriter(services.state, self.log, services.clock, provider=name)
        journal = ReportJournal(session.store_dir / name / "reports-journal.jsonl")
        self.reports = ReportPublisher(
            services, name, self.log, self.quality, journal, self._sent.get
        )
        self._app = engine.EngineApplication(self)
        self._log_factory = NativeLogFactory(
            self.on_engine_event, session.store_dir / name / "engine-log"
        )

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the session (the engine connects and logs on), then consume requests."""
        self._loop = asyncio.get_running_loop()
        self._handover = Handover(self._loop)
        self._stopping = False
        if fix.Session.lookupSession(self._session_id) is not None:
            # the engine keys its sessions by CompIDs, process-wide
            raise ConfigError(
                f"LP {self.name}: a FIX session {self._session_id} already runs in this process",
                setting="lps",
            )
        bus = self.services.bus
        await bus.declare(self.services.queues.reports)
        await bus.declare(self.requests_queue)
        store_dir = self.session.store_dir / self.name
        await asyncio.to_thread(store_dir.mkdir, parents=True, exist_ok=True)
        self._ledger = SentLedger(store_dir / "sent-clordids.txt")
        known = await asyncio.to_thread(self._ledger.open)
        # reports a previous process journaled and did not publish go first
        replayed = await self.reports.open(self._handover)
        dictionary_path = engine.data_dictionary()
        ini = engine.session_ini(
            connection="initiator",
            sender_comp_id=self.session.sender_comp_id,
            target_comp_id=self.session.target_comp_id,
            store_dir=store_dir,
            dictionary=dictionary_path,
            heartbeat_s=self.session.heartbeat_s,
            host=self.session.host,
            port=self.session.port,
            reset_on_logon=self.session.reset_on_logon,
            reconnect_s=self.session.reconnect_min_s,
            start_time=self.session.session_start,
            end_time=self.session.session_end,
        )
        self._dictionary = fix.DataDictionary(str(dictionary_path))
        settings = engine.engine_settings(ini)
        store = fix.FileStoreFactory(settings)
        await asyncio.to_thread(self._log_factory.open)
        self._initiator = fix.SocketInitiator(self._app, store, settings, self._log_factory)
        # the initiator made the session and owns it until it is dropped (``stop``): looked
        # up once here, not per request (each call of the binding lets go of the GIL)
        self._engine_session = fix.Session.lookupSession(self._session_id)
        self.log.info(
            "LPGW:STARTING",
            lp=self.name,
            host=self.session.host,
            port=self.session.port,
            sender_comp_id=self.session.sender_comp_id,
            target_comp_id=self.session.target_comp_id,
            store_dir=str(store_dir),
            clordids_sent=known,
            reports_replayed=replayed,
            password=MASK if self.session.password is not None else None,
        )
        await asyncio.to_thread(self._initiator.start)
        watch = await asyncio.to_thread(DirectoryWatch, store_dir)
        self._store_watch = asyncio.create_task(
            self._watch_store(watch), name=f"lp-{self.name}-store-watch"
        )
        self._consumer = await bus.consume(
            self.requests_queue, self._handle_request, prefetch=self.services.settings.prefetch
        )

    async def _watch_store(self, watch: DirectoryWatch) -> None:
        try:
            reason = await watch.lost()
        finally:
            watch.close()
        self.log.critical(
            "LPGW:STORE_LOST",
            lp=self.name,
            store_dir=str(watch.path),
            reason=reason,
            detail="the session's sequence numbers, message store, ClOrdID ledger and report "
            "journal can no longer be kept; stopping (restore the directory, or reset the "
            "session with the LP, before starting again)",
        )
        self.store_lost.set()

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop taking requests, log out (reports in flight are published first)."""
        self._stopping = True
        deadline = time.monotonic() + drain_timeout_s
        if self._store_watch is not None:
            self._store_watch.cancel()
            self._store_watch = None
        if self._resume_at is not None:
            self._resume_at.cancel()
            self._resume_at = None
        if self._consumer is not None:
            await self._consumer.stop(drain_timeout_s)
            self._consumer = None
        if self._initiator is not None:
            self._engine_session = None
            await asyncio.to_thread(self._initiator.stop)
            self._initiator = None
        await asyncio.to_thread(self._log_factory.close)  # the engine's last events
        self.logged_on.clear()
        # no callback comes any more: publish what was received (what is not stays journaled)
        await self.reports.stop(max(0.0, deadline - time.monotonic()))
        if self._ledger is not None:
            await asyncio.to_thread(self._ledger.close)
        await self.quality.idle()
        if self.executions is not None:
            await self.executions.close(drain_timeout_s)
        self.log.info(
            "LPGW:STOPPED",
            lp=self.name,
            requests_sent=self.log.stats.count("requests_sent"),
            reports_published=self.log.stats.count("reports_published"),
        )

    @property
    def reports_seen(self) -> int:
        """LP reports handled: published, not routable, or refused by our engine."""
        return self.reports.seen + self._refused_reports

    async def idle(self) -> None:
        """Wait until every report received is published."""
        await self.reports.idle()

    # -- requests out -------------------------------------------------------------------
    async def _handle_request(self, delivery: Delivery) -> None:
        message = delivery.message
        try:
            request = request_from_dict(orjson.loads(message.body))
        except (orjson.JSONDecodeError, CodecError, TypeError) as exc:
            self.log.dead_lettered("LPGW:BAD_REQUEST", reason="bad_request", error=str(exc))
            await delivery.dead_letter("bad_request", str(exc))
            return
        while not self.logged_on.is_set():
            if self._stopping:
                await delivery.nack(requeue=True)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.logged_on.wait(), timeout=0.5)
        started = time.perf_counter()
        instrument = await self._instrument(request)
        usd_quote = await self._usd_quote(instrument)
        # from here on nothing awaits until the engine has it: a second delivery of the
        # same request cannot slip in between the ledger's check and the send
        lifecycle_id = request.lifecycle_id
        if self._ledger is not None and lifecycle_id in self._ledger:
            # sent before: a second D with this ClOrdID would be refused as a duplicate
            await delivery.ack()
            self.log.skipped(
                "LPGW:SKIP:DUPLICATE",
                lp=self.name,
                order_id=request.order_id,
                lifecycle_id=lifecycle_id,
                kind=request.kind.value,
            )
            return
        now = self.services.clock.now()
        msg_type, fields = request_fields(request, now)
        # opened before the engine has it: its first report may come before the send returns
        self.quality.sending(
            new_execution(
                request, self.name, now, self.quotes.latest(request.symbol), instrument, usd_quote
            )
        )
        try:
            sent = self._send(msg_type, fields)
        except Exception:
            self.quality.unsent(lifecycle_id)
            raise
        if not sent:
            self.quality.unsent(lifecycle_id)
            self.log.retried("LPGW:NOT_SENT", lp=self.name, lifecycle_id=request.lifecycle_id)
            await asyncio.sleep(0.2)
            await delivery.nack(requeue=True)
            return
        if self._ledger is not None:
            self._ledger.add(lifecycle_id)
        self.quality.sent(lifecycle_id)
        await delivery.ack()
        self._log_sent(request, msg_type, started)

    def _send(self, msg_type: str, fields: Fields) -> bool:
        """Hand one message to the engine, on the loop's thread; True once stored and sent.

        ``sendToTarget`` writes the message to the engine's file store (buffered write and
        flush, no fsync), then to the socket, which never blocks: what the kernel does
        not take at once the engine's own thread sends later. That is tens of
        microseconds; handing it to a worker thread cost far more, because every call of
        the binding lets go of the GIL and a worker waits up to the switch interval to
        get it back from a busy loop, several times per message (measured in
        docs/lp-gateway.md). The binding releases the GIL inside the call, so waiting for
        the session's lock (held while the engine's thread is in a callback) is safe.
        """
        session = self._engine_session
        if session is None or not session.isLoggedOn():
            # logged out since the request was taken (a drop, the session's end): sent
            # now, the engine would only store it, and a new session day resets the store
            return False
        message = engine.fields_message(msg_type, fields, self._dictionary)
        return bool(fix.Session.sendToTarget(message, self._session_id))

    def _log_sent(self, request: ProviderRequest, msg_type: str, started: float) -> None:
        self.log.stats.incr("requests_sent")
        self.log.success(
            "LPGW:SUCCESS",
            processing_time_ms=round((time.perf_counter() - started) * 1000, 3),
            lp=self.name,
            order_id=request.order_id,
            user=request.account_id,
            symbol=request.symbol,
            lifecycle_id=request.lifecycle_id,
            kind=request.kind.value,
            msg_type=msg_type,
        )

    # -- engine callbacks (engine threads) -----------------------------------------------
    def on_logon(self) -> None:
        """The session is up: send requests, subscribe to market data."""
        self._session_up = True
        self.log.info("LPGW:LOGON", lp=self.name)
        self._metric_session(1)
        self._call_soon(self._logged_on)

    def on_logout(self) -> None:
        """The session is down: requests wait; the engine reconnects."""
        self._session_up = False
        self.log.warning("LPGW:LOGOUT", lp=self.name)
        self._metric_session(0)
        self._call_soon(self.logged_on.clear)

    def logon_fields(self) -> Fields:
        """Username (553) / Password (554) on our Logon; the password is never logged."""
        out: Fields = []
        if self.session.username is not None:
            out.append((553, self.session.username))
        if self.session.password is not None:
            out.append((554, self.session.password.get_secret_value()))
        return out

    def on_admin_out(self, msg_type: str, fields: Fields) -> None:
        """Log what our engine says at session level (never the Logon's password)."""
        if msg_type == SESSION_REJECT:
            if first(fields, 372) in REPORT_TYPES:
                self._call_soon(self._refused_report)  # seen, and refused: never published
            self.log.error(
                "LPGW:LP_MESSAGE_REFUSED",
                lp=self.name,
                ref_seq_num=first(fields, 45),
                ref_tag=first(fields, 371),
                ref_msg_type=first(fields, 372),
                reason=first(fields, 58) or first(fields, 373),
            )
        elif msg_type == engine.LOGOUT and (self._session_up or first(fields, 58)):
            # the engine also "sends" a Logout when it resets a session that is not
            # connected (a new session day): nothing went out, nothing to say
            self.log.info("LPGW:LOGOUT_SENT", lp=self.name, text=first(fields, 58))

    def on_sent(self, msg_type: str, seq_num: int, clordid: str | None) -> None:
        """Remember which lifecycle id each of our sequence numbers carried."""
        if clordid is None:
            return
        self._sent[seq_num] = SentRef(msg_type, clordid)
        if len(self._sent) > _SENT_KEPT:
            self._sent.popitem(last=False)

    def on_received(self, msg_type: str, raw: str) -> None:
        """A message from the LP; a report is journaled before this returns (module doc)."""
        if msg_type in REPORT_TYPES or msg_type == SESSION_REJECT:
            self.reports.received(msg_type, raw, self.services.clock.now())
        elif msg_type in ("W", "X"):
            self._call_soon(self._on_quotes, msg_type, raw)
        elif msg_type == engine.LOGOUT:
            fields = parse_fields(raw)[1]
            if self._session_up:
                self.log.warning("LPGW:LOGOUT_RECEIVED", lp=self.name, text=first(fields, 58))
                return
            # a Logout answering our Logon: refused (credentials, CompIDs, schedule)
            self.log.error(
                "LPGW:LOGON_REJECTED",
                lp=self.name,
                host=self.session.host,
                port=self.session.port,
                sender_comp_id=self.session.sender_comp_id,
                target_comp_id=self.session.target_comp_id,
                text=first(fields, 58),
            )
            self._call_soon(self._attempt_failed)

    def on_engine_event(self, text: str) -> None:
        """The engine's event log, into ``lp_gateway.log``."""
        lowered = text.lower()
        if lowered.startswith("connection failed"):
            self._call_soon(self._attempt_failed)
        if any(word in lowered for word in _WARN_EVENTS):
            self.log.stats.incr("session_warnings")
            self.log.warning("LPGW:SESSION_EVENT", lp=self.name, text=text)
        else:
            self.log.info("LPGW:SESSION_EVENT", lp=self.name, text=text)

    def on_callback_error(self, where: str, exc: BaseException) -> None:
        """An error inside a callback; one on a received report ends the process."""
        if where != "fromApp":
            self.log.error("LPGW:CALLBACK_ERROR", exc=exc, lp=self.name, callback=where)
            return
        self.log.critical(
            "LPGW:ABANDONED",
            exc=exc,
            lp=self.name,
            detail="a received LP message could not be journaled; exiting unprocessed so "
            "that the LP re-sends it on the next logon",
        )
        self.services.logs.flush(2.0)
        self._exit(EXIT_ABANDONED)

    # -- on the loop ----------------------------------------------------------------------
    def _call_soon(self, callback: Callable[..., object], *args: object) -> None:
        if self._handover is not None:
            self._handover.call(callback, *args)

    def _refused_report(self) -> None:
        self._refused_reports += 1

    def _attempt_failed(self) -> None:
        """A connect or logon failed: after the first, wait longer each time (backoff).

        The engine reconnects every ``reconnect_min_s``; for a longer wait the session is
        disabled (the engine does not connect a disabled session) and enabled again later.
        """
        self._failures += 1
        session = self.session
        delay_s = min(session.reconnect_max_s, session.reconnect_min_s * 2 ** (self._failures - 1))
        engine_session = fix.Session.lookupSession(self._session_id)
        if self._stopping or delay_s <= session.reconnect_min_s or engine_session is None:
            return
        if self._resume_at is not None:
            return
        engine_session.logout()
        self.log.warning(
            "LPGW:RECONNECT_BACKOFF", lp=self.name, failures=self._failures, delay_s=delay_s
        )
        loop = asyncio.get_running_loop()
        self._resume_at = loop.call_later(delay_s, self._resume, engine_session)

    def _resume(self, engine_session: Any) -> None:
        self._resume_at = None
        if not self._stopping:
            engine_session.logon()

    def _logged_on(self) -> None:
        self._failures = 0
        self.logged_on.set()
        if self.session.symbols:
            self._md_requests += 1
            request_id = f"{self.name}-md-{self._md_requests}"
            body = market_data_request(request_id, self.session.symbols)
            sent = self._send("V", body)
            self.log.info(
                "LPGW:MARKET_DATA_REQUESTED",
                lp=self.name,
                sent=sent,
                symbols=len(self.session.symbols),
            )

    async def _instrument(self, request: ProviderRequest) -> InstrumentConfig | None:
        """The request's instrument (pip size, contract size, profit currency), read once."""
        key = (request.group, request.symbol)
        if key in self._instruments:
            return self._instruments[key]
        try:
            data = await self.services.state.get_instrument(request.group, request.symbol)
            found = instrument_from_dict(data) if data is not None else None
        except (ExecflowError, CodecError):
            return None  # asked again next time
        self._instruments[key] = found
        return found

    async def _usd_quote(self, instrument: InstrumentConfig | None) -> Quote | None:
        """The quote converting the instrument's profit currency to USD, as held now.

        This LP's own market data first (it is current), else the state store's quotes
        (read again at most every few seconds): the pair ``money.to_usd`` would use.
        """
        if instrument is None or instrument.profit_currency == USD:
            return None
        currency = instrument.profit_currency
        pairs = (currency + USD, USD + currency)
        for pair in pairs:
            bid, ask = self.quotes.latest(pair)
            if bid is not None and ask is not None:
                return Quote(pair, bid, ask)
        now = time.monotonic()
        if self._prices is None or now - self._prices[0] > _PRICES_MAX_AGE_S:
            try:
                self._prices = (
                    now,
                    self.services.decoded.prices(await self.services.state.get_prices()),
                )
            except ExecflowError:
                return None
        prices = self._prices[1]
        for pair in pairs:
            quote = prices.get(pair)
            if quote is not None:
                return quote
        return None

    def _on_quotes(self, msg_type: str, raw: str) -> None:
        try:
            updates = quote_updates(msg_type, parse_fields(raw)[1])
        except ValueError as exc:
            self.log.stats.incr("bad_quotes")
            self.log.warning("LPGW:BAD_QUOTE", lp=self.name, error=str(exc))
            return
        self.quotes.update(updates)

    def _metric_session(self, up: int) -> None:
        metrics = self.services.metrics
        if metrics is not None:
            metrics.lp_session_up.labels(self.name).set(up)
