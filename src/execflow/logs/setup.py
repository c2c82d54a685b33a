"""``setup_logging``: the entry point's one call that turns the logging layer on.

Nothing happens at import time. Setup creates the directory and files, starts the
writer and maintenance threads, installs the stdlib bridge, and returns a ``LogSystem``
whose ``close()`` undoes all of it (tests set up and close many times per process).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, TextIO

from execflow.clock import Clock, SystemClock
from execflow.logs.bridge import BridgeHandler, install_bridge, remove_bridge
from execflow.logs.catalog import CALCULATIONS, ERRORS, component_spec, file_name, resolve
from execflow.logs.events import EventLogger
from execflow.logs.failures import FailureReporter, WriterCounters
from execflow.logs.files import RotatingFile, ensure_dir
from execflow.logs.formatting import Timestamper
from execflow.logs.maintenance import Maintenance
from execflow.logs.stats import ComponentStats
from execflow.logs.writer import BackgroundWriter, Sink
from execflow.settings import Settings

__all__ = ["LogSystem", "setup_logging"]


class LogSystem:
    """The running logging layer of one process: writers, event loggers, threads."""

    def __init__(
        self,
        settings: Settings,
        component: str,
        instance: int,
        clock: Clock,
        stderr: TextIO | None,
        bridge: bool,
        qualifier: str | None = None,
    ) -> None:
        self.settings = settings
        self.instance = instance
        self.qualifier = qualifier
        self.directory = Path(settings.log_dir)
        self.file = file_name(component_spec(component).file, instance, qualifier)
        """This process's own log file (its component's), e.g. ``worker_open-2.log``."""
        self.counters = WriterCounters()
        self.failures = FailureReporter(self.counters, stream=stderr)
        self.writer = BackgroundWriter(
            self.counters,
            self.failures,
            flush_interval_s=settings.log_flush_interval_s,
            buffer_bytes=settings.log_buffer_bytes,
        )
        self.maintenance = Maintenance(
            self.directory,
            self.failures,
            gzip_level=settings.log_gzip_level,
            retention_days=settings.log_retention_days,
            max_total_bytes=settings.log_max_total_bytes,
        )
        self._clock = clock
        self._min_level = logging.getLevelNamesMapping()[settings.log_level]
        self._timestamper = Timestamper()
        self._loggers: dict[str, EventLogger] = {}
        self._lock = threading.Lock()
        self._closed = False
        ensure_dir(self.directory)
        self._errors = self._open_sink(ERRORS)
        self._calculations = self._open_sink(CALCULATIONS)
        self.events = self.logger(component)
        self._bridge: BridgeHandler | None = None
        if bridge:
            self._bridge = install_bridge(self.events, self._min_level)
        self.writer.on_tick(self._tick)
        self.writer.start()
        self.maintenance.start()

    def _open_sink(self, name: str) -> Sink:
        hook = self.maintenance.request_gzip if self.settings.log_gzip else None
        resolved = resolve(self.settings, name, self.instance, self.qualifier)
        file = RotatingFile(resolved, self.counters, self.failures, hook)
        file.open()
        return self.writer.add(file)

    def logger(self, component: str) -> EventLogger:
        """The event logger of ``component`` (its file is opened on first use)."""
        spec = component_spec(component)
        with self._lock:
            found = self._loggers.get(spec.component)
            if found is not None:
                return found
            stats = ComponentStats(
                spec.component,
                self.instance,
                clock=self._clock,
                every_n=self.settings.stats_every_n,
                interval_s=self.settings.stats_interval_s,
                log_counters=self.counters.snapshot,
            )
            created = EventLogger(
                spec.logger_name,
                self._open_sink(spec.file),
                self._errors,
                self._calculations,
                self.writer,
                stats,
                min_level=self._min_level,
                json_format=self.settings.log_format == "json",
                timestamper=self._timestamper,
            )
            self._loggers[spec.component] = created
            return created

    def stats_snapshot(self) -> dict[str, dict[str, Any]]:
        """``snapshot()`` of every component's stats, by component name."""
        return {name: log.stats.snapshot() for name, log in self._loggers.items()}

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Block until every line logged so far is on disk."""
        return self.writer.flush(timeout_s)

    def close(self) -> None:
        """Final STATS lines, flush, stop the threads, remove the bridge (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._bridge is not None:
            remove_bridge(self._bridge)
            self._bridge = None
        # Flush first so the final STATS line counts every line written before it.
        self.writer.flush()
        for log in list(self._loggers.values()):
            log.emit_stats(final=True)
        self.writer.close()
        self.maintenance.close()

    def __enter__(self) -> LogSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tick(self) -> None:
        for log in list(self._loggers.values()):
            log.tick()


def setup_logging(
    settings: Settings,
    component: str,
    instance: int | None = None,
    clock: Clock | None = None,
    *,
    bridge: bool = True,
    stderr: TextIO | None = None,
    qualifier: str | None = None,
) -> LogSystem:
    """Start the logging layer for ``component`` (instance from settings when None).

    Called by entry points only. ``stderr`` receives the rate-limited failure reports
    (default ``sys.stderr`` at report time); ``qualifier`` goes into the component
    files' names (``lp_gateway-NAME.log``).
    """
    number = settings.instance if instance is None else instance
    return LogSystem(
        settings,
        component,
        number,
        clock or SystemClock(),
        stderr,
        bridge,
        qualifier,
    )
