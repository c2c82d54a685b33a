"""One LP's FIX session on the bus: provider requests out, reports and quotes in (DESIGN §10).

Threads: QuickFIX calls back on its own threads. A report the LP sends is handed to the
event loop with ``run_coroutine_threadsafe`` and the engine's callback blocks until the
report is published to ``reports`` with confirms. QuickFIX increments the expected
incoming sequence number (and persists it in the file store) only after the callback
returns, so a gateway that dies between receiving and publishing has not counted the
message: on the next logon the LP's higher sequence number opens a gap, the engine asks
for a resend, and the LP sends it again (PossDup). The dispatcher's exec_id ledger
applies the copy once. If publishing cannot succeed and the gateway must stop, it ends
the process rather than return from the callback (a return would count the message as
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
from datetime import datetime
from typing import Any

import orjson
import quickfix as fix

from execflow.backends.bus import H_MESSAGE_ID, Consumer, Delivery
from execflow.backends.lp_store import LpExecutionStore
from execflow.backends.sql import SqlDatabase
from execflow.backends.sql_lp import SqlLpExecutionStore
from execflow.domain.codec import CodecError, instrument_from_dict, request_from_dict
from execflow.domain.lpquality import new_execution
from execflow.domain.messages import ProviderRequest
from execflow.domain.models import InstrumentConfig, Prices, Quote
from execflow.domain.money import USD
from execflow.errors import BusError, ConfigError, ExecflowError
from execflow.gateway import engine
from execflow.gateway.executions import ExecutionWriter
from execflow.gateway.fixmap import (
    REPORT_TYPES,
    SESSION_REJECT,
    Fields,
    SentRef,
    first,
    market_data_request,
    quote_updates,
    report_document,
    request_fields,
)
from execflow.gateway.ledger import SentLedger
from execflow.gateway.quality import QualityRecorder
from execflow.gateway.quotes import QuoteWriter
from execflow.logs.events import EventLogger
from execflow.logs.masking import MASK
from execflow.pipeline.refdata import prices_of
from execflow.pipeline.services import Services
from execflow.settings import LpSession

__all__ = ["EXIT_ABANDONED", "LpGateway"]

EXIT_ABANDONED = 70
"""Exit status when a received report could not be published before stopping."""

_SENT_KEPT = 50_000
_PRICES_MAX_AGE_S = 5.0
_PUBLISH_BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
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
        self._dictionary: Any = None
        self._session_id = fix.SessionID(
            engine.BEGIN_STRING, session.sender_comp_id, session.target_comp_id
        )
        self._consumer: Consumer | None = None
        self.logged_on = asyncio.Event()
        # messages for the engine, handed over in batches by one sender task (in order)
        self._outbox: list[tuple[str, Fields, bool, asyncio.Future[bool]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._sending: dict[str, asyncio.Future[bool]] = {}
        self._stopping = False
        self._stop_deadline = float("inf")
        self._publishing = 0
        self.reports_seen = 0  # LP reports handled (published, or logged as not routable)
        self._quiet = asyncio.Event()
        self._quiet.set()
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
        self.quotes = QuoteWriter(services.state, self.log, services.clock, provider=name)
        self._app = engine.EngineApplication(self)
        self._log_factory = engine.EngineLogFactory(self.on_engine_event)

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the session (the engine connects and logs on), then consume requests."""
        self._loop = asyncio.get_running_loop()
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
        self._initiator = fix.SocketInitiator(self._app, store, settings, self._log_factory)
        self.log.info(
            "LPGW:STARTING",
            lp=self.name,
            host=self.session.host,
            port=self.session.port,
            sender_comp_id=self.session.sender_comp_id,
            target_comp_id=self.session.target_comp_id,
            store_dir=str(store_dir),
            clordids_sent=known,
            password=MASK if self.session.password is not None else None,
        )
        await asyncio.to_thread(self._initiator.start)
        self._consumer = await bus.consume(
            self.requests_queue, self._handle_request, prefetch=self.services.settings.prefetch
        )

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop taking requests, log out (reports in flight are published first)."""
        self._stopping = True
        self._stop_deadline = time.monotonic() + drain_timeout_s
        if self._resume_at is not None:
            self._resume_at.cancel()
            self._resume_at = None
        if self._consumer is not None:
            await self._consumer.stop(drain_timeout_s)
            self._consumer = None
        if self._initiator is not None:
            # the loop keeps running meanwhile: a callback blocked on a publish finishes
            await asyncio.to_thread(self._initiator.stop)
            self._initiator = None
        self.logged_on.clear()
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

    async def idle(self) -> None:
        """Wait until no report is being published."""
        await self._quiet.wait()

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
        msg_type, fields = request_fields(request, self.services.clock.now())
        lifecycle_id = request.lifecycle_id
        earlier = self._sending.get(lifecycle_id)
        if earlier is not None:
            # the same request delivered twice at once: the second waits for the first
            with contextlib.suppress(Exception):
                await asyncio.shield(earlier)
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
        instrument = await self._instrument(request)
        usd_quote = await self._usd_quote(instrument)
        # opened before the engine has it: its first report may come before this resumes
        self.quality.sending(
            new_execution(
                request,
                self.name,
                self.services.clock.now(),
                self.quotes.latest(request.symbol),
                instrument,
                usd_quote,
            )
        )
        future = self._enqueue(msg_type, fields, record=True)
        self._sending[lifecycle_id] = future
        try:
            sent = await future
        except BaseException:
            self.quality.unsent(lifecycle_id)
            raise
        finally:
            if self._sending.get(lifecycle_id) is future:
                del self._sending[lifecycle_id]
        if not sent:
            self.quality.unsent(lifecycle_id)
            self.log.retried("LPGW:NOT_SENT", lp=self.name, lifecycle_id=request.lifecycle_id)
            await asyncio.sleep(0.2)
            await delivery.nack(requeue=True)
            return
        self.quality.sent(lifecycle_id)
        await delivery.ack()
        self._log_sent(request, msg_type, started)

    def _enqueue(self, msg_type: str, fields: Fields, *, record: bool) -> asyncio.Future[bool]:
        """Queue a message for the engine; the future says whether it was stored and sent."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._outbox.append((msg_type, fields, record, future))
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._drain_outbox(), name=f"lpgw-{self.name}-send")
        return future

    async def _drain_outbox(self) -> None:
        """Hand queued messages to the engine in batches: one thread hop per batch, in order.

        Sending one message per hop cost a trip through the event loop each, the whole of
        the gateway's throughput on a busy pipeline.
        """
        while self._outbox:
            batch, self._outbox = self._outbox, []
            items = [(msg_type, fields, record) for msg_type, fields, record, _ in batch]
            try:
                results = await asyncio.to_thread(self._send_batch, items)
            except BaseException as exc:
                for *_message, future in batch:
                    if not future.done():
                        future.set_exception(ExecflowError("gateway send interrupted"))
                if isinstance(exc, Exception):
                    continue
                raise
            for (*_message, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _send_batch(self, items: list[tuple[str, Fields, bool]]) -> list[bool | Exception]:
        out: list[bool | Exception] = []
        for msg_type, fields, record in items:
            try:
                out.append(
                    self._send_request(msg_type, fields) if record else self._send(msg_type, fields)
                )
            except Exception as exc:  # noqa: BLE001 - handed to the request that caused it
                out.append(exc)
        return out

    def _send_request(self, msg_type: str, fields: Fields) -> bool:
        sent = self._send(msg_type, fields)
        clordid = first(fields, 11)
        if sent and clordid is not None and self._ledger is not None:
            self._ledger.add(clordid)
        return sent

    def _send(self, msg_type: str, fields: Fields) -> bool:
        session = fix.Session.lookupSession(self._session_id)
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
                self.reports_seen += 1  # seen, and refused: it will not be published
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

    def on_sent(self, msg_type: str, seq_num: int, fields: Fields) -> None:
        """Remember which lifecycle id each of our sequence numbers carried."""
        clordid = first(fields, 11)
        if clordid is None:
            return
        self._sent[seq_num] = SentRef(msg_type, clordid)
        if len(self._sent) > _SENT_KEPT:
            self._sent.popitem(last=False)

    def on_received(self, msg_type: str, fields: Fields, raw: str) -> None:
        """A message from the LP; reports block here until published (see module doc)."""
        if msg_type in REPORT_TYPES or msg_type == SESSION_REJECT:
            loop = self._loop
            if loop is None:
                raise RuntimeError("gateway not started")
            received_at = self.services.clock.now()
            future = asyncio.run_coroutine_threadsafe(
                self._publish(msg_type, fields, received_at), loop
            )
            future.result()
        elif msg_type in ("W", "X"):
            self._call_soon(self._on_quotes, msg_type, fields)
        elif msg_type == engine.LOGOUT:
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
            detail="a received LP message could not be published; exiting unprocessed so "
            "that the LP re-sends it on the next logon",
        )
        self.services.logs.flush(2.0)
        self._exit(EXIT_ABANDONED)

    # -- on the loop ----------------------------------------------------------------------
    def _call_soon(self, callback: Callable[..., object], *args: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback, *args)

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
            task = asyncio.get_running_loop().create_task(self._send_admin_free("V", body))
            self.quotes.track(task)

    async def _send_admin_free(self, msg_type: str, fields: Fields) -> None:
        sent = await self._enqueue(msg_type, fields, record=False)
        self.log.info("LPGW:MARKET_DATA_REQUESTED", lp=self.name, sent=sent, symbols=len(fields))

    async def _publish(self, msg_type: str, fields: Fields, received_at: datetime) -> None:
        self._publishing += 1
        self._quiet.clear()
        try:
            await self._publish_one(msg_type, fields, received_at)
            self.reports_seen += 1
        finally:
            self._publishing -= 1
            if not self._publishing:
                self._quiet.set()

    async def _publish_one(self, msg_type: str, fields: Fields, received_at: datetime) -> None:
        sent = None
        if msg_type in (SESSION_REJECT, "j"):
            ref = first(fields, 45)
            sent = self._sent.get(int(ref)) if ref and ref.isdigit() else None
        doc = report_document(msg_type, fields, self.name, sent)
        seq = first(fields, 34)
        poss_dup = first(fields, 43) == "Y"
        if doc is None:
            self.log.stats.incr("not_routed")
            self.log.warning(
                "LPGW:NOT_ROUTED",
                lp=self.name,
                msg_type=msg_type,
                seq_num=seq,
                text=first(fields, 58),
            )
            return
        body = orjson.dumps(doc)
        exec_id = str(doc.get("17") or "")
        headers = {"provider": self.name}
        message_id = f"{self.name}:{exec_id}" if exec_id else None
        if message_id is not None:
            headers[H_MESSAGE_ID] = message_id
        await self._publish_confirmed(body, headers, message_id)
        self.log.stats.incr("reports_published")
        # the engine's thread waits for this coroutine, one report at a time: what is not
        # the publish (quality figures, the log line) runs after it has let the engine go
        asyncio.get_running_loop().call_soon(
            self._report_received, msg_type, seq, poss_dup, doc, received_at
        )

    def _report_received(
        self,
        msg_type: str,
        seq: str | None,
        poss_dup: bool,
        doc: dict[str, Any],
        received_at: datetime,
    ) -> None:
        figures = self.quality.report(doc, received_at)
        self.log.info(
            "LPGW:REPORT_RECEIVED",
            lp=self.name,
            msg_type=msg_type,
            seq_num=seq,
            poss_dup=poss_dup,
            lifecycle_id=doc.get("11"),
            exec_id=doc.get("17") or None,
            status=doc.get("39"),
            **figures,
        )

    async def _publish_confirmed(
        self, body: bytes, headers: dict[str, str], message_id: str | None
    ) -> None:
        queue = self.services.queues.reports
        attempt = 0
        while True:
            try:
                await self.services.bus.publish(queue, body, headers, message_id)
                return
            except (BusError, ExecflowError) as exc:
                attempt += 1
                if self._stopping and time.monotonic() > self._stop_deadline:
                    raise
                delay = _PUBLISH_BACKOFF_S[min(attempt, len(_PUBLISH_BACKOFF_S)) - 1]
                self.log.retried(
                    "LPGW:PUBLISH_RETRY", lp=self.name, attempt=attempt, error=str(exc)
                )
                await asyncio.sleep(delay)

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
                self._prices = (now, prices_of(await self.services.state.get_prices()))
            except ExecflowError:
                return None
        prices = self._prices[1]
        for pair in pairs:
            quote = prices.get(pair)
            if quote is not None:
                return quote
        return None

    def _on_quotes(self, msg_type: str, fields: Fields) -> None:
        try:
            updates = quote_updates(msg_type, fields)
        except ValueError as exc:
            self.log.stats.incr("bad_quotes")
            self.log.warning("LPGW:BAD_QUOTE", lp=self.name, error=str(exc))
            return
        self.quotes.update(updates)

    def _metric_session(self, up: int) -> None:
        metrics = self.services.metrics
        if metrics is not None:
            metrics.lp_session_up.labels(self.name).set(up)
