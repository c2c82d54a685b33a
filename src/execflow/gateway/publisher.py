"""LP messages that become reports: journaled on the engine's thread, published in batches.

``received`` runs on the engine's thread inside ``fromApp``: it appends the message to
the ``ReportJournal`` (flushed) and hands it to the loop; the engine may then count it.
On the loop one task publishes what waits, in arrival order, as one ``publish_batch``
with confirms, then does what is not the publish: the quality figures and the
``LPGW:REPORT_RECEIVED`` line. Published batches are marked in the journal by a task of
their own, off the loop (the next batch does not wait for the disk), at most every
``MARK_EVERY_S`` (a mark covers every batch published before it). A publish that
fails is retried with backoff; one the broker never takes before the gateway must stop
stays in the journal and is published at the next start (``open``), before the session
is resumed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from execflow.backends.bus import H_MESSAGE_ID, OutgoingMessage
from execflow.errors import BusError, ExecflowError
from execflow.gateway.fixmap import (
    SESSION_REJECT,
    SentRef,
    first,
    parse_fields,
    raw_field,
    report_document,
)
from execflow.gateway.handover import Handover
from execflow.gateway.journal import JournalEntry, ReportJournal
from execflow.gateway.quality import QualityRecorder
from execflow.logs.events import EventLogger
from execflow.pipeline.services import Services

__all__ = ["BATCH_MAX", "MARK_EVERY_S", "ReportPublisher"]

BATCH_MAX = 500
"""Reports published in one ``publish_batch`` at most."""

MARK_EVERY_S = 0.05
"""Published entries are marked in the journal at most this often (one line covers them)."""

_PUBLISH_BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class ReportPublisher:
    """Journal, then publish, the reports of one LP's session."""

    def __init__(
        self,
        services: Services,
        lp: str,
        log: EventLogger,
        quality: QualityRecorder,
        journal: ReportJournal,
        sent_ref: Callable[[int], SentRef | None],
    ) -> None:
        self._services = services
        self._lp = lp
        self._log = log
        self._quality = quality
        self._journal = journal
        self._sent_ref = sent_ref
        self._handover: Handover | None = None
        self._waiting: list[JournalEntry] = []
        self._task: asyncio.Task[None] | None = None
        self._marker: asyncio.Task[None] | None = None
        self._published_upto = 0  # the journal index of the last entry published
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._stop_deadline = float("inf")
        self.seen = 0
        """Reports handled: published, or not routable (``ViaFix.idle`` compares it)."""

    async def open(self, handover: Handover) -> int:
        """Open the journal; what a previous process left unpublished is published first."""
        self._handover = handover
        left = await asyncio.to_thread(self._journal.open)
        if self._journal.torn_lines:
            self._log.warning("LPGW:JOURNAL_TORN_LINE", lp=self._lp, lines=self._journal.torn_lines)
        if left:
            self._log.warning("LPGW:JOURNAL_REPLAY", lp=self._lp, reports=len(left))
            for entry in left:
                self._arrived(entry)
        return len(left)

    # -- engine thread --------------------------------------------------------------------
    def received(self, msg_type: str, raw: str, received_at: datetime) -> None:
        """A report-bearing LP message (engine thread): kept on disk, then handed over.

        Raises when the journal cannot take it: the engine must not count it then.
        """
        handover = self._handover
        if handover is None:
            raise RuntimeError("gateway not started")
        ref = None
        if msg_type in (SESSION_REJECT, "j"):
            sent = self._sent_ref(_ref_seq(raw))
            ref = (sent.msg_type, sent.lifecycle_id) if sent is not None else None
        index = self._journal.append(received_at, raw, ref)
        handover.call(self._arrived, JournalEntry(index, received_at, raw, ref))

    # -- on the loop ----------------------------------------------------------------------
    async def idle(self) -> None:
        """Wait until every received report is published (or given up at a stop)."""
        await self._quiet.wait()

    def waiting(self) -> int:
        """Reports received and not yet published."""
        return len(self._waiting)

    async def stop(self, drain_timeout_s: float) -> None:
        """Publish what waits (bounded; retries end at the deadline), then close the journal.

        What the broker did not take stays in the journal for the next start.
        """
        self._stop_deadline = time.monotonic() + drain_timeout_s
        await _finish(self._task, drain_timeout_s + 1.0)
        await _finish(self._marker, drain_timeout_s + 1.0)  # (the publisher may have made it)
        kept = await asyncio.to_thread(self._journal.unmarked)
        if kept:
            self._log.warning(
                "LPGW:REPORTS_KEPT",
                lp=self._lp,
                reports=kept,
                detail="received, not published before the stop: published at the next start",
            )
        await asyncio.to_thread(self._journal.close)
        self._waiting.clear()
        self._quiet.set()

    def _arrived(self, entry: JournalEntry) -> None:
        self._waiting.append(entry)
        self._quiet.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"lpgw-{self._lp}-publish"
            )

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[:BATCH_MAX]
                await self._publish(batch)
                del self._waiting[: len(batch)]
        except (BusError, ExecflowError) as exc:
            # only at a stop, past its deadline: the journal keeps them for the next start
            self._log.error("LPGW:PUBLISH_GIVEN_UP", exc=exc, lp=self._lp)
        finally:
            if not self._waiting:
                self._quiet.set()

    async def _publish(self, batch: list[JournalEntry]) -> None:
        prepared = [self._prepare(entry) for entry in batch]
        outgoing = [out for _entry, _msg, _fields, _doc, out in prepared if out is not None]
        if outgoing:
            await self._publish_confirmed(outgoing)
        self._published_upto = batch[-1].index
        if self._marker is None or self._marker.done():
            self._marker = asyncio.get_running_loop().create_task(
                self._mark(), name=f"lpgw-{self._lp}-journal-mark"
            )
        stats = self._log.stats
        for entry, msg_type, fields, doc, out in prepared:
            self.seen += 1
            if doc is None or out is None:
                stats.incr("not_routed")
                self._log.warning(
                    "LPGW:NOT_ROUTED",
                    lp=self._lp,
                    msg_type=msg_type,
                    seq_num=first(fields, 34),
                    text=first(fields, 58),
                )
                continue
            stats.incr("reports_published")
            self._report_received(msg_type, fields, doc, entry.received_at)

    async def _mark(self) -> None:
        marked = 0
        while marked < self._published_upto:
            # one hop to a worker thread per mark costs far more than the line it writes:
            # what is published within MARK_EVERY_S is marked with one line (an entry
            # published and not yet marked is only published again after a crash, and
            # the dispatcher's exec_id ledger applies that copy once)
            await asyncio.sleep(MARK_EVERY_S)
            upto = self._published_upto
            try:
                await asyncio.to_thread(self._journal.mark, upto)
            except OSError as exc:
                # published all the same: at worst the next start publishes them once more
                self._log.warning("LPGW:JOURNAL_MARK_FAILED", lp=self._lp, error=str(exc))
            marked = upto

    def _prepare(
        self, entry: JournalEntry
    ) -> tuple[JournalEntry, str, list[tuple[int, str]], dict[str, Any] | None, Any]:
        msg_type, fields = parse_fields(entry.raw)
        sent = SentRef(*entry.ref) if entry.ref is not None else None
        doc = report_document(msg_type, fields, self._lp, sent)
        if doc is None:
            return entry, msg_type, fields, None, None
        exec_id = str(doc.get("17") or "")
        headers = {"provider": self._lp}
        message_id = f"{self._lp}:{exec_id}" if exec_id else None
        if message_id is not None:
            headers[H_MESSAGE_ID] = message_id
        out = OutgoingMessage(orjson.dumps(doc), headers, message_id)
        return entry, msg_type, fields, doc, out

    async def _publish_confirmed(self, messages: list[OutgoingMessage]) -> None:
        queue = self._services.queues.reports
        attempt = 0
        while True:
            try:
                await self._services.bus.publish_batch(queue, messages)
                return
            except (BusError, ExecflowError) as exc:
                attempt += 1
                if time.monotonic() > self._stop_deadline:
                    raise
                delay = _PUBLISH_BACKOFF_S[min(attempt, len(_PUBLISH_BACKOFF_S)) - 1]
                self._log.retried(
                    "LPGW:PUBLISH_RETRY", lp=self._lp, attempt=attempt, error=str(exc)
                )
                await asyncio.sleep(delay)

    def _report_received(
        self,
        msg_type: str,
        fields: list[tuple[int, str]],
        doc: dict[str, Any],
        received_at: datetime,
    ) -> None:
        figures = self._quality.report(doc, received_at)
        self._log.info(
            "LPGW:REPORT_RECEIVED",
            lp=self._lp,
            msg_type=msg_type,
            seq_num=first(fields, 34),
            poss_dup=first(fields, 43) == "Y",
            lifecycle_id=doc.get("11"),
            exec_id=doc.get("17") or None,
            status=doc.get("39"),
            **figures,
        )


async def _finish(task: asyncio.Task[None] | None, timeout_s: float) -> None:
    """Wait for ``task`` (bounded), then cancel it."""
    if task is None:
        return
    done, _pending = await asyncio.wait({task}, timeout=max(0.1, timeout_s))
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _ref_seq(raw: str) -> int:
    """RefSeqNum (45) of a reject, or 0 when absent (our sequence numbers start at 1)."""
    value = raw_field(raw, 45) or ""
    return int(value) if value.isdigit() else 0
