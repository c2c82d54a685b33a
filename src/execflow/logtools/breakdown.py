"""Outcomes per symbol and per LP, and the LP's reject reasons, for ``logs report``.

Only outcome lines are parsed (``:SUCCESS``, ``:ERROR``, ``:DLQ``, and the simulated
LP's answers ``SIM:FILLED``, ``SIM:REJECTED``, ...), found with a byte regex first.
Per symbol: the workers' lines (the gateway and the simulator repeat the symbol). Per
LP: the LP gateway's lines name their ``lp``; the simulator's lines (no LP name, it is
the only LP) count as the LP ``simulator``. Reject reasons: ``REJECT:SUCCESS`` lines
carry ``rejection_type`` and ``reason``. Shared files (``provider_errors.log``,
``orders_calculated.log``) repeat lines and are not read.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from execflow.logtools.files import LogFile, discover
from execflow.logtools.record import LogRecord, parse_line
from execflow.logtools.scan import ScanProgress, map_files, matching_lines
from execflow.logtools.stats import percentile

__all__ = ["Breakdown", "GroupStats", "collect_breakdown"]

# an outcome tag, or any answer of the simulated LP (SIM:FILLED, SIM:REJECTED, ...)
_TAG = rb"(?:[A-Z_]+:(?:SUCCESS|ERROR|DLQ)|SIM:[A-Z_]+)"
_TEXT_OUTCOME = re.compile(rb"\n\S+ [A-Z]+ provider\.[\w.]+ \[" + _TAG + rb"\][^\n]*")
_JSON_OUTCOME = re.compile(rb'\n\{[^\n]*"event\.action":"' + _TAG + rb'"[^\n]*')
SIMULATOR_LP = "simulator"


@dataclass
class GroupStats:
    """Outcomes of one symbol or one LP."""

    success: int = 0
    failure: int = 0
    dead_lettered: int = 0
    rejected: int = 0
    times_ms: Counter[float] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        """Every outcome line counted."""
        return self.success + self.failure + self.dead_lettered

    def merge(self, other: GroupStats) -> None:
        """Add ``other``'s counts into this one."""
        self.success += other.success
        self.failure += other.failure
        self.dead_lettered += other.dead_lettered
        self.rejected += other.rejected
        self.times_ms.update(other.times_ms)

    def p(self, pct: float) -> float | None:
        """Processing-time percentile (ms) of the success lines."""
        return percentile(self.times_ms, pct)


@dataclass
class Breakdown:
    """Per-symbol and per-LP outcomes, and rejects by ``(rejection_type, reason)``."""

    symbols: dict[str, GroupStats] = field(default_factory=dict)
    lps: dict[str, GroupStats] = field(default_factory=dict)
    reject_reasons: Counter[tuple[str, str]] = field(default_factory=Counter)

    def merge(self, other: Breakdown) -> None:
        """Add ``other``'s counts into this one."""
        for mine, theirs in ((self.symbols, other.symbols), (self.lps, other.lps)):
            for name, stats in theirs.items():
                mine.setdefault(name, GroupStats()).merge(stats)
        self.reject_reasons.update(other.reject_reasons)

    def add(self, record: LogRecord) -> None:
        """One outcome line."""
        outcome = record.tag.rsplit(":", 1)[-1]
        symbol = record.get("symbol")
        lp = record.get("lp")
        is_reject = record.component == "worker_reject" and outcome == "SUCCESS"
        if record.component == "simulator":
            # the simulator logs each answer as a success: SIM:FILLED, SIM:REJECTED, ...
            lp = lp or SIMULATOR_LP
            is_reject = outcome == "REJECTED"
            outcome = outcome if outcome in ("ERROR", "DLQ") else "SUCCESS"
        elif is_reject:
            kind = record.get("rejection_type") or "unknown"
            self.reject_reasons[(kind, record.get("reason") or "none given")] += 1
        if not record.component.startswith("worker_"):
            symbol = None  # the gateway and the simulator repeat the worker's symbol
        for table, name in ((self.symbols, symbol), (self.lps, lp)):
            if not name:
                continue
            stats = table.setdefault(name, GroupStats())
            if outcome == "SUCCESS":
                stats.success += 1
                stats.rejected += is_reject
                _time(stats, record.get("processing_time_ms"))
            elif outcome == "ERROR":
                stats.failure += 1
            else:
                stats.dead_lettered += 1


def _time(stats: GroupStats, raw: str | None) -> None:
    if raw is None:
        return
    try:
        stats.times_ms[float(raw)] += 1
    except ValueError:
        return


def _scan_file(bounds: tuple[str | None, str | None], log_file: LogFile) -> Breakdown:
    since, until = bounds
    result = Breakdown()
    for line in matching_lines(log_file, _TEXT_OUTCOME, _JSON_OUTCOME):
        record = parse_line(line, log_file.name)
        if record is None or (since and record.ts < since) or (until and record.ts > until):
            continue
        result.add(record)
    return result


def collect_breakdown(
    directory: Path,
    *,
    since: str | None = None,
    until: str | None = None,
    components: set[str] | None = None,
    jobs: int | None = None,
    progress: ScanProgress | None = None,
) -> Breakdown:
    """Per-symbol and per-LP outcomes and reject reasons from the files under ``directory``."""
    files = [f for f in discover(directory) if not f.shared]
    if components is not None:
        files = [f for f in files if f.stem in components]
    merged = Breakdown()
    for part in map_files(partial(_scan_file, (since, until)), files, jobs, progress):
        merged.merge(part)
    return merged
