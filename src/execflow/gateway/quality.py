"""Per-LP execution quality, as the gateway sends requests and receives reports.

The gateway opens a record (``execflow.domain.lpquality.LpExecution``) for each request
before handing it to the engine and folds each published report into it with the
domain's ``apply_report``; what changed becomes the report's log figures, Prometheus
metrics (label ``lp`` only, never an id), STATS counters, and a database write
(``ExecutionWriter``), from which ``execflow lp quality`` summarises with the same
domain functions.

Records stay in memory (the newest ``KEPT``) so that late and duplicate reports find
theirs; a report for a request this process does not hold (sent before a restart, or
forgotten) has its record read back from the database in the background. Reject reasons
come from the LP as free text: a metric label of their own only for the first
``REASONS_KEPT`` distinct ones per process, the rest count as ``other``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from execflow.domain.lpquality import (
    ExecutionStatus,
    LpExecution,
    apply_report,
    figures,
    reason_label,
)
from execflow.domain.messages import ExecutionReport
from execflow.domain.reports import normalise
from execflow.errors import ExecflowError, ReportError
from execflow.gateway.executions import ExecutionWriter
from execflow.logs.events import EventLogger
from execflow.metrics import Metrics

__all__ = ["KEPT", "REASONS_KEPT", "QualityRecorder"]

REASONS_KEPT = 20
KEPT = 100_000
_UNKNOWN_KEPT = 10_000

Loader = Callable[[str], Awaitable[LpExecution | None]]


class QualityRecorder:
    """The records of one LP's requests, turned into figures as reports come in."""

    def __init__(
        self,
        lp: str,
        log: EventLogger,
        metrics: Metrics | None,
        writer: ExecutionWriter | None = None,
        load: Loader | None = None,
    ) -> None:
        self._lp = lp
        self._log = log
        self._metrics = metrics
        self._writer = writer
        self._load = load
        self._records: OrderedDict[str, LpExecution] = OrderedDict()
        self._reasons: set[str] = set()
        self._unknown: OrderedDict[str, None] = OrderedDict()
        self._loading: dict[str, list[tuple[ExecutionReport, datetime]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def record(self, lifecycle_id: str) -> LpExecution | None:
        """The record held for ``lifecycle_id``, if any."""
        return self._records.get(lifecycle_id)

    def sending(self, execution: LpExecution) -> None:
        """A request is about to be handed to the engine (so its reports find it)."""
        self._records[execution.lifecycle_id] = execution
        self._records.move_to_end(execution.lifecycle_id)
        while len(self._records) > KEPT:
            self._records.popitem(last=False)

    def unsent(self, lifecycle_id: str) -> None:
        """The engine did not take it (the session went down): no record."""
        self._records.pop(lifecycle_id, None)

    def sent(self, lifecycle_id: str) -> None:
        """The engine stored and sent it: count it and write its record."""
        execution = self._records.get(lifecycle_id)
        if execution is None:
            return
        if execution.is_market:
            self._log.stats.incr("lots_requested_x100", int(execution.qty * 100))
            if self._metrics is not None:
                self._metrics.lp_lots_requested.labels(self._lp).inc(float(execution.qty))
        if self._writer is not None:
            self._writer.put(execution)

    def report(self, doc: Mapping[str, Any], received_at: datetime) -> dict[str, object]:
        """Fold one published report in; returns the figures for its log line."""
        try:
            report = normalise(doc, self._lp)
        except ReportError:
            return {}  # the pipeline refuses it (DLQ): it counts for nothing here either
        if not isinstance(report, ExecutionReport) or report.lifecycle_id is None:
            return {}
        execution = self._records.get(report.lifecycle_id)
        if execution is None:
            self._load_later(report.lifecycle_id, report, received_at)
            return {}
        return self._apply(execution, report, received_at)

    async def idle(self) -> None:
        """Wait until every record read back from the database was folded in."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _apply(
        self, before: LpExecution, report: ExecutionReport, at: datetime
    ) -> dict[str, object]:
        after = apply_report(before, report, at)
        if after == before:
            return {}
        self._records[after.lifecycle_id] = after
        out = self._account(before, after)
        if self._writer is not None:
            self._writer.put(after)
        return out

    # C901: one short block per figure a report can change, each its field, metric, counter
    def _account(self, before: LpExecution, after: LpExecution) -> dict[str, object]:  # noqa: C901
        """Log figures, metrics and counters of what one report changed."""
        out: dict[str, object] = {}
        measured = figures(after)
        metrics = self._metrics
        stats = self._log.stats
        if before.first_report_at is None and measured.first_report_ms is not None:
            out["latency_ms"] = round(measured.first_report_ms, 3)
            if metrics is not None:
                seconds = measured.first_report_ms / 1000
                metrics.lp_first_report_seconds.labels(self._lp).observe(seconds)
                metrics.observe_lp_latency(seconds)
        if before.filled_at is None and after.filled_at is not None:
            stats.incr("fills")
            if measured.fill_ms is not None:
                out["fill_latency_ms"] = round(measured.fill_ms, 3)
                if metrics is not None:
                    metrics.lp_fill_seconds.labels(self._lp).observe(measured.fill_ms / 1000)
        filled = after.cum_qty - before.cum_qty
        if after.is_market and filled > 0:
            stats.incr("lots_filled_x100", int(filled * 100))
            if metrics is not None:
                metrics.lp_lots_filled.labels(self._lp).inc(float(filled))
        if before.status.is_final or not after.status.is_final:
            return out
        if after.status is ExecutionStatus.REJECTED:
            label = self._label(after.reject_reason or "rejected")
            stats.incr(f"rejects.{label}")
            if metrics is not None:
                metrics.lp_rejects.labels(self._lp, label).inc()
        if measured.slippage_pips is not None:
            out["slippage_pips"] = round(measured.slippage_pips, 2)
            if metrics is not None:
                metrics.lp_slippage_pips.labels(self._lp).observe(float(measured.slippage_pips))
        if measured.slippage_usd is not None:
            out["slippage_usd"] = round(measured.slippage_usd, 2)
            if metrics is not None:
                metrics.lp_slippage_usd.labels(self._lp).observe(float(measured.slippage_usd))
        return out

    def _label(self, reason: str) -> str:
        label = reason_label(reason)
        if label in self._reasons:
            return label
        if len(self._reasons) >= REASONS_KEPT:
            return "other"
        self._reasons.add(label)
        return label

    # -- records this process does not hold -------------------------------------------------
    def _load_later(self, lifecycle_id: str, report: ExecutionReport, at: datetime) -> None:
        if self._load is None or lifecycle_id in self._unknown:
            self._log.stats.incr("quality_unknown_reports")
            return
        waiting = self._loading.get(lifecycle_id)
        if waiting is not None:
            waiting.append((report, at))
            return
        self._loading[lifecycle_id] = [(report, at)]
        task = asyncio.get_running_loop().create_task(self._read_back(lifecycle_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_back(self, lifecycle_id: str) -> None:
        assert self._load is not None
        try:
            stored = await self._load(lifecycle_id)
        except ExecflowError as exc:
            stored = None
            self._log.warning("LPGW:QUALITY_READ_FAILED", lifecycle_id=lifecycle_id, error=str(exc))
        waiting = self._loading.pop(lifecycle_id, [])
        execution = self._records.get(lifecycle_id) or stored
        if execution is None:
            self._unknown[lifecycle_id] = None
            while len(self._unknown) > _UNKNOWN_KEPT:
                self._unknown.popitem(last=False)
            self._log.stats.incr("quality_unknown_reports", len(waiting))
            return
        self._records.setdefault(lifecycle_id, execution)
        for report, at in waiting:
            current = self._records.get(lifecycle_id, execution)
            self._apply(current, report, at)
