"""Per-LP execution quality, measured by the gateway as requests go out and reports come in.

For each request: the time to the LP's first report and to its first fill; for each fill
of a market order the slippage against the quote the gateway held when it sent the order
(of a limit or stop order, against its requested level), signed so that positive is in
the client's favour, in pips and in USD; rejects by reason; lots requested and filled.
They go to Prometheus (label ``lp`` only, never an id) and to the gateway's STATS line.

Reject reasons come from the LP as free text: a label of their own only for the first
``REASONS_KEPT`` distinct ones per process, the rest count as ``other`` (labels must
stay few).
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from execflow.domain.enums import LpOrderType, Side
from execflow.domain.messages import ProviderRequest
from execflow.logs.events import EventLogger
from execflow.metrics import Metrics

__all__ = ["QualityRecorder", "reject_reason", "slippage"]

REASONS_KEPT = 20
_FLIGHTS_KEPT = 100_000
_NON_WORD = re.compile(r"[^a-z0-9]+")


def slippage(side: Side, reference: Decimal, fill: Decimal) -> Decimal:
    """Price difference in the client's favour: a BUY filled below, a SELL above, is positive."""
    return reference - fill if side is Side.BUY else fill - reference


def reject_reason(msg_type: str, doc: Mapping[str, Any]) -> str:
    """A short label for why the LP refused: the message kind, OrdRejReason, or its text."""
    if msg_type == "9":
        return "cancel_reject"
    if msg_type == "j":
        return "business_reject"
    if msg_type == "3":
        return "session_reject"
    code = doc.get("103")
    if code:
        return f"ord_rej_reason_{code}"
    text = _NON_WORD.sub("_", str(doc.get("58") or "unknown").lower()).strip("_")
    return text[:40] or "unknown"


@dataclass(slots=True)
class _Flight:
    request: ProviderRequest
    sent_at: float
    reference: Decimal | None
    answered: bool = False
    filled: bool = False


class QualityRecorder:
    """Keeps the requests in flight and turns their reports into quality figures."""

    def __init__(self, lp: str, log: EventLogger, metrics: Metrics | None) -> None:
        self._lp = lp
        self._log = log
        self._metrics = metrics
        self._flights: OrderedDict[str, _Flight] = OrderedDict()
        self._reasons: set[str] = set()

    def sent(self, request: ProviderRequest, quote: tuple[Decimal | None, Decimal | None]) -> None:
        """A request went out; ``quote`` is the (bid, ask) the gateway held at that moment."""
        reference: Decimal | None
        if request.order_type is LpOrderType.MARKET:
            bid, ask = quote
            reference = ask if request.side is Side.BUY else bid
        else:
            reference = request.price if request.price is not None else request.stop_px
        self._flights[request.lifecycle_id] = _Flight(request, time.monotonic(), reference)
        while len(self._flights) > _FLIGHTS_KEPT:
            self._flights.popitem(last=False)
        if request.kind.value.startswith(("OPEN", "CLOSE", "PLACE")):
            self._log.stats.incr("lots_requested_x100", int(request.qty * 100))
            if self._metrics is not None:
                self._metrics.lp_lots_requested.labels(self._lp).inc(float(request.qty))

    def request_of(self, lifecycle_id: str) -> ProviderRequest | None:
        """The request in flight under ``lifecycle_id``, if any."""
        flight = self._flights.get(lifecycle_id)
        return None if flight is None else flight.request

    def report(
        self, msg_type: str, doc: Mapping[str, Any], pip: Decimal | None
    ) -> dict[str, object]:
        """Account for one published report; returns the figures for its log line."""
        flight = self._flights.get(str(doc.get("11")))
        out: dict[str, object] = {}
        status = doc.get("39")
        if status == "8":
            reason = reject_reason(msg_type, doc)
            if reason not in self._reasons:
                if len(self._reasons) >= REASONS_KEPT:
                    reason = "other"
                else:
                    self._reasons.add(reason)
            self._log.stats.incr(f"rejects.{reason}")
            if self._metrics is not None:
                self._metrics.lp_rejects.labels(self._lp, reason).inc()
        if flight is None:
            return out
        elapsed = time.monotonic() - flight.sent_at
        if not flight.answered:
            flight.answered = True
            out["latency_ms"] = round(elapsed * 1000, 3)
            if self._metrics is not None:
                self._metrics.lp_first_report_seconds.labels(self._lp).observe(elapsed)
                self._metrics.observe_lp_latency(elapsed)
        if status in ("1", "2"):
            out.update(self._fill(flight, doc, elapsed, pip))
        if status in ("2", "4", "8"):
            self._flights.pop(str(doc.get("11")), None)
        return out

    def _fill(
        self, flight: _Flight, doc: Mapping[str, Any], elapsed: float, pip: Decimal | None
    ) -> dict[str, object]:
        out: dict[str, object] = {}
        metrics = self._metrics
        if not flight.filled:
            flight.filled = True
            out["fill_latency_ms"] = round(elapsed * 1000, 3)
            self._log.stats.incr("fills")
            if metrics is not None:
                metrics.lp_fill_seconds.labels(self._lp).observe(elapsed)
        if doc.get("39") == "2" and doc.get("14"):
            lots = Decimal(str(doc["14"]))
            self._log.stats.incr("lots_filled_x100", int(lots * 100))
            if metrics is not None:
                metrics.lp_lots_filled.labels(self._lp).inc(float(lots))
        raw_px = doc.get("31") or doc.get("6")
        if flight.reference is None or not raw_px or pip is None or pip <= 0:
            return out
        diff = slippage(flight.request.side, flight.reference, Decimal(str(raw_px)))
        pips = diff / pip
        out["slippage_pips"] = round(pips, 2)
        if metrics is not None:
            metrics.lp_slippage_pips.labels(self._lp).observe(float(pips))
        return out
