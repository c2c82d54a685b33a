"""The event API every component logs through: ``log.success("OPEN:SUCCESS", order_id=...)``.

One call formats one line on the caller's thread (no ``LogRecord``, a pre-built
``" LEVEL logger ["`` head, a cached timestamp prefix) and appends its bytes to the
file's queue; the background writer does the disk write. A disabled level returns
before any work.
"""

from __future__ import annotations

import traceback as tb
from collections.abc import Mapping
from typing import Any

from execflow.logs.context import _CONTEXT
from execflow.logs.formatting import (
    LEVEL_NAMES,
    Timestamper,
    json_line,
    safe_name,
    text_line,
)
from execflow.logs.stats import ComponentStats
from execflow.logs.writer import BackgroundWriter, Sink

__all__ = ["CRITICAL", "DEBUG", "ERROR", "INFO", "WARNING", "EventLogger", "error_fields"]

DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50


def error_fields(exc: BaseException | None, with_traceback: bool = True) -> dict[str, Any]:
    """``error_type``, ``error`` and (when the exception has one) ``traceback``."""
    if exc is None:
        return {}
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = str(exc)
    fields: dict[str, Any] = {"error_type": type(exc).__name__, "error": message}
    extra = getattr(exc, "fields", None)
    if isinstance(extra, Mapping):
        # ExecflowError carries structured context; keep it as fields, never overriding.
        for key, value in extra.items():
            fields.setdefault(str(key), value)
    if with_traceback and exc.__traceback__ is not None:
        fields["traceback"] = "".join(tb.format_exception(exc)).rstrip("\n")
    return fields


class EventLogger:
    """Writes one component's events to its file (and errors / calculations to theirs)."""

    def __init__(
        self,
        logger_name: str,
        sink: Sink,
        errors: Sink,
        calculations: Sink,
        writer: BackgroundWriter,
        stats: ComponentStats,
        min_level: int = INFO,
        json_format: bool = False,
        timestamper: Timestamper | None = None,
    ) -> None:
        self.name = logger_name
        self.min_level = min_level
        self.stats = stats
        self.json_format = json_format
        self._sink = sink
        self._queue = sink.queue
        self._errors = errors
        self._calculations = calculations
        self._writer = writer
        self._stamp = timestamper or Timestamper()
        # level -> tag -> " LEVEL logger [TAG]", the constant part after the timestamp.
        self._heads: dict[int, dict[str, str]] = {level: {} for level in LEVEL_NAMES}
        self._info_heads = self._heads[INFO]
        self._extra: dict[str, Any] = {}
        if stats.instance > 1:
            self._extra["instance"] = stats.instance

    # -- plain events -------------------------------------------------------------------------
    def event(self, level: int, tag: str, /, **fields: Any) -> None:
        """One line at ``level`` with tag ``tag`` (``COMPONENT:EVENT``) and ``fields``."""
        if level < self.min_level and level < ERROR:
            return
        self._emit(level, tag, fields)

    def debug(self, tag: str, /, **fields: Any) -> None:
        """A DEBUG line (acks, ignored messages)."""
        if self.min_level > DEBUG:
            return
        self._emit(DEBUG, tag, fields)

    def info(self, tag: str, /, **fields: Any) -> None:
        """An INFO line (lifecycle)."""
        if self.min_level > INFO:
            return
        self._emit(INFO, tag, fields)

    def warning(self, tag: str, /, **fields: Any) -> None:
        """A WARNING line."""
        if self.min_level > WARNING:
            return
        self._emit(WARNING, tag, fields)

    def order_processing(
        self,
        tag: str,
        /,
        *,
        order_id: Any,
        user: Any = None,
        symbol: Any = None,
        processing_time_ms: float | None = None,
        level: int = INFO,
        **extra: Any,
    ) -> None:
        """The common shape of a line about one order; ``None`` fields are left out."""
        if level < self.min_level:
            return
        fields: dict[str, Any] = {"order_id": order_id}
        if user is not None:
            fields["user"] = user
        if symbol is not None:
            fields["symbol"] = symbol
        if processing_time_ms is not None:
            fields["processing_time_ms"] = processing_time_ms
        fields.update(extra)
        self._emit(level, tag, fields)

    # -- outcomes (each one also counts in the stats) ---------------------------------------
    def success(
        self, tag: str, /, *, processing_time_ms: float | None = None, **fields: Any
    ) -> None:
        """An item processed successfully: INFO line with its metrics; counts ``success``."""
        # ComponentStats.record_success, inlined (a method call costs as much as its body).
        stats = self.stats
        counts = stats.counts
        counts["success"] += 1
        counts["processed"] = processed = counts["processed"] + 1
        if processing_time_ms is not None:
            stats.times.append(processing_time_ms)
        if self.min_level <= INFO:
            if processing_time_ms is not None:
                fields["processing_time_ms"] = processing_time_ms
            if self.json_format:
                self._emit(INFO, tag, fields)
            else:
                # The hottest call of every worker: _emit inlined for the INFO text case.
                head = self._info_heads.get(tag) or self._head(INFO, tag)
                queue = self._queue
                queue.append(text_line(self._stamp, head, fields, _CONTEXT.get()))
                if len(queue) >= self._sink.threshold:
                    self._writer.pressure(self._sink)
        if processed >= stats.due_at:
            self.emit_stats()

    def skipped(self, tag: str, /, **fields: Any) -> None:
        """A duplicate or stale item acknowledged without effect; counts ``skipped``."""
        self._outcome("skipped", INFO, tag, fields)

    def parked(self, tag: str, /, **fields: Any) -> None:
        """An item that came too early, parked for a retry; counts ``parked``."""
        self._outcome("parked", WARNING, tag, fields)

    def retried(self, tag: str, /, **fields: Any) -> None:
        """A failed attempt that will be retried; counts ``retried``."""
        self._outcome("retried", WARNING, tag, fields)

    def dead_lettered(self, tag: str, /, *, reason: str, **fields: Any) -> None:
        """An item sent to the DLQ with ``reason``; counts ``dead_lettered``, ``dlq.<reason>``."""
        self.stats.incr(f"dlq.{reason}")
        fields["reason"] = reason
        self._outcome("dead_lettered", WARNING, tag, fields)

    def failure(self, tag: str, /, *, exc: BaseException | None = None, **context: Any) -> None:
        """An item whose processing failed: like ``error``, and counts ``failure``."""
        self._outcome("failure", ERROR, tag, {**context, **self._extra, **error_fields(exc)})

    # -- errors, calculations, stats ------------------------------------------------------------
    def error(
        self, tag: str, /, *, exc: BaseException | None = None, level: int = ERROR, **context: Any
    ) -> None:
        """An ERROR line with context and traceback, in this file and in provider_errors.log."""
        self._emit(level, tag, {**context, **self._extra, **error_fields(exc)})

    def critical(self, tag: str, /, *, exc: BaseException | None = None, **context: Any) -> None:
        """A CRITICAL line: the component cannot continue."""
        self.error(tag, exc=exc, level=CRITICAL, **context)

    def calculation(self, name: str, /, **fields: Any) -> None:
        """One JSON line in orders_calculated.log with every input and output of ``name``."""
        data = json_line(self._stamp(), "INFO", self.name, name, fields, _CONTEXT.get())
        sink = self._calculations
        sink.queue.append(data)
        if len(sink.queue) >= sink.threshold:
            self._writer.pressure(sink)

    def emit_stats(self, final: bool = False, force: bool = False) -> bool:
        """Write the STATS line if one is due (always when ``final`` or ``force``)."""
        fields = self.stats.take_line(final=final, force=force)
        if fields is None:
            return False
        self._queue.append(self._line(INFO, "STATS", fields, with_context=False))
        if final:
            self._writer.wake.set()
        return True

    def tick(self) -> None:
        """Emit a STATS line when the interval has passed (the writer calls this each second)."""
        self.emit_stats()

    def bridged(self, level: int, logger: str, fields: dict[str, Any], errors_copy: bool) -> None:
        """A stdlib record (tag ``LOG``), from the bridge handler."""
        data = self._line(level, "LOG", fields, logger=safe_name(logger))
        if level >= self.min_level:
            self._queue.append(data)
            if len(self._queue) >= self._sink.threshold:
                self._writer.pressure(self._sink)
        if errors_copy:
            self._errors.queue.append(data)
            self._writer.wake.set()

    # -- internals ---------------------------------------------------------------------------
    def _outcome(self, outcome: str, level: int, tag: str, fields: Mapping[str, Any]) -> None:
        due = self.stats.record(outcome, fields.get("processing_time_ms"))
        if level >= self.min_level or level >= ERROR:
            self._emit(level, tag, fields)
        if due:
            self.emit_stats()

    def _head(self, level: int, tag: str) -> str:
        head = f" {LEVEL_NAMES[level]} {self.name} [{safe_name(tag)}]"
        heads = self._heads[level]
        if len(heads) < 4096:
            heads[tag] = head
        return head

    def _line(
        self,
        level: int,
        tag: str,
        fields: Mapping[str, Any],
        logger: str | None = None,
        with_context: bool = True,
    ) -> bytes:
        context = _CONTEXT.get() if with_context else {}
        if self.json_format:
            name = logger or self.name
            return json_line(self._stamp(), LEVEL_NAMES[level], name, tag, fields, context)
        if logger is None:
            head = self._heads[level].get(tag) or self._head(level, tag)
        else:
            head = f" {LEVEL_NAMES[level]} {logger} [{safe_name(tag)}]"
        return text_line(self._stamp, head, fields, context)

    def _emit(self, level: int, tag: str, fields: Mapping[str, Any]) -> None:
        if self.json_format:
            data = self._line(level, tag, fields)
        else:
            head = self._heads[level].get(tag) or self._head(level, tag)
            data = text_line(self._stamp, head, fields, _CONTEXT.get())
        if level >= self.min_level:
            queue = self._queue
            queue.append(data)
            if len(queue) >= self._sink.threshold:
                self._writer.pressure(self._sink)
        if level >= ERROR:
            # Every ERROR/CRITICAL also goes to provider_errors.log, written promptly:
            # a crash right after must not lose it.
            self._errors.queue.append(data)
            self._writer.wake.set()
