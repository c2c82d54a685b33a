"""``logs stats``: outcomes per component, counted from the log files.

Counting follows "Outcome tags" in docs/log-format.md. The scan is byte-level: one
compiled regex per format picks the outcome lines of a block and captures only what is
counted (time, logger, outcome, the rest of the line); ``processing_time_ms`` and
``reason`` are then found with ``bytes.find``. Processing times are kept as a count per
distinct written value, so memory stays bounded however many lines are read, and the
percentiles are exact. ``provider_errors.log`` (copies of ERROR lines) and
``orders_calculated.log`` are not counted.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from execflow.logtools.files import LogFile, discover, iter_blocks
from execflow.logtools.record import component_of, parse_line
from execflow.logtools.scan import ScanProgress, map_files
from execflow.logtools.timeutil import parse_ts

__all__ = ["PeriodStats", "StatsReport", "collect_stats", "percentile"]

_OUTCOMES = rb"SUCCESS|ERROR|SKIP:DUPLICATE|SKIP:STALE|PARKED|DLQ|RETRY|ROUTED|IGNORED"
_TEXT = re.compile(
    rb"\n(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z) [A-Z]+ provider\.([\w.]+) \[[A-Z_]+:("
    + _OUTCOMES
    + rb")\]([^\n]*)"
)
_JSON = re.compile(
    rb'\n\{"@timestamp":"([^"]+)","log\.level":"[A-Z]+","log\.logger":"provider\.([^"]+)",'
    rb'"event\.action":"[A-Z_]+:(' + _OUTCOMES + rb')"([^\n]*)'
)
_JSON_CANONICAL = b'\n{"@timestamp":"'
_OUTCOME_SUFFIXES = tuple(":" + o for o in _OUTCOMES.decode().split("|"))
# The fast path counts in C: (second, logger, outcome) per outcome line, and
# processing_time_ms values of success lines, each with ``Counter(regex.findall(...))``.
# Character-class repeats and possessive quantifiers: sre runs them as tight loops with
# no backtracking, about twice as fast per line as the digit-by-digit timestamp.
_TEXT_COUNT = re.compile(
    rb"\n([-0-9:T]{19})\.[0-9]++Z [A-Z]++ provider\.([\w.]++) \[[A-Z_]++:(" + _OUTCOMES + rb")\]"
)
_JSON_COUNT = re.compile(
    rb'\n\{"@timestamp":"([-0-9:T]{19})[^"]*+","log\.level":"[A-Z]++",'
    rb'"log\.logger":"provider\.([^"]++)","event\.action":"[A-Z_]++:(' + _OUTCOMES + rb')"'
)
# When one logger wrote every success line of a block (the usual case: one file, one
# component) and the block holds as many times as success lines, the times are read
# with a regex that starts with a literal (much faster); otherwise line by line.
_TEXT_MS = re.compile(rb" processing_time_ms=([^ \n]+)")
_JSON_MS = re.compile(rb',"processing_time_ms":("?[0-9.eE+-]+)')
_TEXT_MS_BY_LOGGER = re.compile(
    rb"\n\S+ [A-Z]+ provider\.([\w.]+) \[[A-Z_]+:(?:SUCCESS|ROUTED)\]"
    rb"[^\n]*? processing_time_ms=([^ \n]+)"
)
_JSON_MS_BY_LOGGER = re.compile(
    rb'"log\.logger":"provider\.([^"]+)","event\.action":"[A-Z_]+:(?:SUCCESS|ROUTED)"'
    rb'[^\n]*?,"processing_time_ms":("?[0-9.eE+-]+)'
)
_TEXT_LINE_START = re.compile(rb"\n\d")
_SUCCESS = {b"SUCCESS", b"ROUTED"}
_SKIPPED = {b"SKIP:DUPLICATE", b"SKIP:STALE", b"IGNORED"}


@dataclass
class PeriodStats:
    """Counters of one component (all its instances) over the chosen period."""

    processed: int = 0
    success: int = 0
    failure: int = 0
    skipped: int = 0
    parked: int = 0
    retried: int = 0
    dead_lettered: int = 0
    dlq_reasons: Counter[str] = field(default_factory=Counter)
    times_ms: Counter[float] = field(default_factory=Counter)
    per_second: Counter[str] = field(default_factory=Counter)
    errors_per_second: Counter[str] = field(default_factory=Counter)
    dlq_per_second: Counter[str] = field(default_factory=Counter)
    first_ts: str | None = None
    last_ts: str | None = None

    def merge(self, other: PeriodStats) -> None:
        """Add ``other``'s counts into this one."""
        for name in ("processed", "success", "failure", "skipped", "parked", "retried"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.dead_lettered += other.dead_lettered
        for mine, theirs in (
            (self.dlq_reasons, other.dlq_reasons),
            (self.times_ms, other.times_ms),
            (self.per_second, other.per_second),
            (self.errors_per_second, other.errors_per_second),
            (self.dlq_per_second, other.dlq_per_second),
        ):
            mine.update(theirs)  # type: ignore[arg-type]
        firsts = [t for t in (self.first_ts, other.first_ts) if t]
        lasts = [t for t in (self.last_ts, other.last_ts) if t]
        self.first_ts = min(firsts) if firsts else None
        self.last_ts = max(lasts) if lasts else None

    def rates(self) -> dict[str, float]:
        """Success and error rates, and throughput per minute over the observed span."""
        processed = self.processed or 0
        span_s = 0.0
        if self.first_ts and self.last_ts:
            span_s = (parse_ts(self.last_ts) - parse_ts(self.first_ts)).total_seconds()
        return {
            "success_rate": self.success / processed if processed else 0.0,
            "error_rate": self.failure / processed if processed else 0.0,
            "throughput_per_min": processed * 60.0 / max(span_s, 1.0),
        }

    def latency(self) -> dict[str, float | None]:
        """p50 / p95 / p99 / max processing time in ms (nearest rank)."""
        return {
            "p50_ms": percentile(self.times_ms, 50),
            "p95_ms": percentile(self.times_ms, 95),
            "p99_ms": percentile(self.times_ms, 99),
            "max_ms": max(self.times_ms) if self.times_ms else None,
        }

    def to_json(self) -> dict[str, Any]:
        """The summary ``logs stats --json`` prints."""
        return {
            "processed": self.processed,
            "success": self.success,
            "failure": self.failure,
            "skipped": self.skipped,
            "parked": self.parked,
            "retried": self.retried,
            "dead_lettered": self.dead_lettered,
            "dlq_by_reason": dict(sorted(self.dlq_reasons.items())),
            **self.rates(),
            **self.latency(),
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
        }


def percentile(counts: Counter[float], pct: float) -> float | None:
    """Nearest-rank percentile of a value -> count histogram."""
    total = sum(counts.values())
    if total == 0:
        return None
    rank = max(1, -(-total * pct // 100))
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return value
    return max(counts)


@dataclass
class StatsReport:
    """Per-component statistics and the files they were read from."""

    components: dict[str, PeriodStats]
    files: list[str]
    since: str | None = None
    until: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The document ``logs stats --json`` prints."""
        return {
            "since": self.since,
            "until": self.until,
            "files": self.files,
            "components": {k: v.to_json() for k, v in sorted(self.components.items())},
        }


def _field_value(rest: bytes, text_key: bytes, json_key: bytes) -> bytes | None:
    """A field's raw value in the tail of a line (text ``key=`` or JSON ``"key":``)."""
    pos = rest.find(text_key)
    while pos > 0 and rest[pos - 1] != 0x20:  # ``dlq_reason=`` is not ``reason=``
        pos = rest.find(text_key, pos + 1)
    if pos >= 0:
        start = pos + len(text_key)
        if rest[start : start + 1] == b'"':
            return _json_string_at(rest, start)
        end = rest.find(b" ", start)
        return rest[start:] if end < 0 else rest[start:end]
    pos = rest.find(json_key)
    if pos < 0:
        return None
    start = pos + len(json_key)
    if rest[start : start + 1] == b'"':
        return _json_string_at(rest, start)
    end = start
    while end < len(rest) and rest[end : end + 1] not in (b",", b"}"):
        end += 1
    return rest[start:end]


def _json_string_at(rest: bytes, start: int) -> bytes | None:
    end = start + 1
    while True:
        end = rest.find(b'"', end)
        if end < 0:
            return None
        backslashes = 0
        while rest[end - 1 - backslashes] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            break
        end += 1
    try:
        value = json.loads(rest[start : end + 1])
    except ValueError:
        return None
    return str(value).encode()


class _Tally:
    """Counts of one scan, keyed by raw bytes until the end (cheaper per line)."""

    def __init__(self, since: bytes | None, until: bytes | None) -> None:
        self.since = since
        self.until = until
        self.stats: dict[bytes, PeriodStats] = {}
        self.times: dict[bytes, dict[bytes, int]] = {}

    def _stats(self, logger: bytes) -> PeriodStats:
        stats = self.stats.get(logger)
        if stats is None:
            stats = self.stats[logger] = PeriodStats()
            self.times[logger] = {}
        return stats

    def seen(self, logger: bytes, first: bytes, last: bytes) -> None:
        """Widen the component's observed span to ``[first, last]``."""
        stats = self._stats(logger)
        first_text, last_text = first.decode(), last.decode()
        if stats.first_ts is None or first_text < stats.first_ts:
            stats.first_ts = first_text
        if stats.last_ts is None or last_text > stats.last_ts:
            stats.last_ts = last_text

    def count(self, second: str, logger: bytes, outcome: bytes, ms: bytes, n: int) -> None:
        """``n`` outcome lines of one kind in one second (``ms``: processing time or empty)."""
        stats = self._stats(logger)
        if outcome == b"PARKED":
            stats.parked += n
            return
        if outcome == b"RETRY":
            stats.retried += n
            return
        stats.processed += n
        stats.per_second[second] += n
        if outcome in _SUCCESS:
            stats.success += n
            if ms:
                self.timed(logger, ms, n)
        elif outcome in _SKIPPED:
            stats.skipped += n
        elif outcome == b"ERROR":
            stats.failure += n
            stats.errors_per_second[second] += n
        else:  # DLQ
            stats.dead_lettered += n
            stats.dlq_per_second[second] += n

    def timed(self, logger: bytes, ms: bytes, n: int) -> None:
        """``n`` success lines of ``logger`` that took ``ms`` (raw written value)."""
        times = self.times[logger]
        times[ms] = times.get(ms, 0) + n

    def dlq_reason(self, logger: bytes, rest: bytes) -> None:
        """One DLQ line's reason from the tail of its line."""
        reason = _field_value(rest, b"reason=", b'"reason":') or b"unknown"
        self.reason(logger, reason.decode("utf-8", "replace"))

    def reason(self, logger: bytes, reason: str) -> None:
        """One DLQ line's reason (its count went through ``count``)."""
        self._stats(logger).dlq_reasons[reason] += 1

    def in_bounds(self, ts: bytes) -> bool:
        """True when ``ts`` is inside ``[since, until]``."""
        return not (
            (self.since is not None and ts < self.since)
            or (self.until is not None and ts > self.until)
        )

    def add(self, ts: bytes, logger: bytes, outcome: bytes, rest: bytes) -> None:
        """One outcome line (the slow path: blocks that straddle a bound)."""
        if not self.in_bounds(ts):
            return
        self.seen(logger, ts, ts)
        ms = b""
        if outcome in _SUCCESS:
            ms = _field_value(rest, b"processing_time_ms=", b'"processing_time_ms":') or b""
        self.count(ts[:19].decode(), logger, outcome, ms, 1)
        if outcome == b"DLQ":
            self.dlq_reason(logger, rest)

    def add_json_line(self, line: bytes) -> None:
        """A JSON line whose keys are not in the canonical order: decode it fully."""
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            return
        if not isinstance(data, dict):
            return
        action = str(data.get("event.action", ""))
        logger = str(data.get("log.logger", ""))
        if not logger.startswith("provider.") or not action.endswith(_OUTCOME_SUFFIXES):
            return
        outcome = next(o for o in _OUTCOME_SUFFIXES if action.endswith(o))[1:]
        self.add(
            str(data.get("@timestamp", "")).encode(),
            logger[len("provider.") :].encode(),
            outcome.encode(),
            orjson.dumps({k: v for k, v in data.items() if k in ("processing_time_ms", "reason")}),
        )

    def result(self) -> dict[str, PeriodStats]:
        out: dict[str, PeriodStats] = {}
        for logger, stats in self.stats.items():
            if not (stats.processed or stats.parked or stats.retried):
                continue
            for raw, count in self.times[logger].items():
                try:
                    stats.times_ms[float(raw.strip(b'"'))] += count
                except ValueError:
                    continue
            name = component_of("provider." + logger.decode())
            if name in out:
                out[name].merge(stats)
            else:
                out[name] = stats
        return out


def _line_ts(data: bytes, at: int) -> bytes:
    """The timestamp of the line starting at ``at`` (JSON or text), or ``b""``."""
    if data.startswith(b'{"@timestamp":"', at):
        return data[at + 15 : at + 42]
    return data[at : at + 27]


def _block_span(data: bytes) -> tuple[bytes, bytes]:
    """Timestamps of the first and last lines of a block (``data`` starts with ``\n``)."""
    body_end = len(data) - 1 if data.endswith(b"\n") else len(data)
    last_start = data.rfind(b"\n", 0, body_end) + 1
    return _line_ts(data, 1), _line_ts(data, last_start)


def _dlq_reasons(tally: _Tally, data: bytes, markers: tuple[bytes, ...]) -> None:
    """Reasons of the (rare) DLQ lines of a block, found by their tag."""
    for marker in markers:
        pos = data.find(marker)
        while pos >= 0:
            start = data.rfind(b"\n", 0, pos) + 1
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end
            record = parse_line(data[start:end])
            if record is not None and record.logger.startswith("provider."):
                logger = record.logger[len("provider.") :].encode()
                reason = record.get("reason") or "unknown"
                tally.reason(logger, reason)
            pos = data.find(marker, end)


def _count_fast(tally: _Tally, data: bytes, first: bytes, last: bytes, json_lines: int) -> None:
    """A block entirely inside the period: count with ``Counter(findall)``, in C."""
    formats = []
    # Text lines start with their timestamp: a digit after the newline.
    if not json_lines or _TEXT_LINE_START.search(data) is not None:
        formats.append((_TEXT_COUNT, _TEXT_MS, _TEXT_MS_BY_LOGGER))
    if json_lines:
        formats.append((_JSON_COUNT, _JSON_MS, _JSON_MS_BY_LOGGER))
    for count_re, ms_re, ms_by_logger_re in formats:
        succeeded: dict[bytes, int] = {}
        for (second, logger, outcome), n in Counter(count_re.findall(data)).items():
            tally.count(second.decode(), logger, outcome, b"", n)
            tally.seen(logger, first, last)
            if outcome in _SUCCESS:
                succeeded[logger] = succeeded.get(logger, 0) + n
        if succeeded:
            _count_times(tally, data, succeeded, ms_re, ms_by_logger_re)
    if b":DLQ" in data:
        _dlq_reasons(tally, data, (b":DLQ] ", b':DLQ"') if json_lines else (b":DLQ] ",))


def _count_times(
    tally: _Tally,
    data: bytes,
    succeeded: dict[bytes, int],
    ms_re: re.Pattern[bytes],
    ms_by_logger_re: re.Pattern[bytes],
) -> None:
    """The processing times of a block's successes (one logger: no need to tell them apart)."""
    if len(succeeded) == 1:
        times = Counter(ms_re.findall(data))
        if times.total() == sum(succeeded.values()):
            only = next(iter(succeeded))
            for ms, n in times.items():
                tally.timed(only, ms, n)
            return
    for (logger, ms), n in Counter(ms_by_logger_re.findall(data)).items():
        tally.timed(logger, ms, n)


def _scan_file(
    bounds: tuple[bytes | None, bytes | None], log_file: LogFile
) -> dict[str, PeriodStats]:
    """Counts of one file (runs in a worker process for big scans)."""
    tally = _Tally(*bounds)
    add = tally.add
    for block in iter_blocks(log_file):
        data = b"\n" + block
        # No '{' at all (most text blocks) is one memchr pass; counting "\n{" is slower.
        json_lines = data.count(b"\n{") if b"{" in data else 0
        first, last = _block_span(data)
        if tally.in_bounds(first) and tally.in_bounds(last) and first <= last:
            _count_fast(tally, data, first, last, json_lines)
        elif (tally.since is None or last >= tally.since) and (
            tally.until is None or first <= tally.until
        ):
            for ts, logger, outcome, rest in _TEXT.findall(data):
                add(ts, logger, outcome, rest)
            if json_lines:
                for ts, logger, outcome, rest in _JSON.findall(data):
                    add(ts, logger, outcome, rest)
        if json_lines and data.count(_JSON_CANONICAL) != json_lines:
            for line in data.split(b"\n"):
                if line.startswith(b"{") and not line.startswith(_JSON_CANONICAL[1:]):
                    tally.add_json_line(line)
    return tally.result()


def collect_stats(
    directory: Path,
    *,
    since: str | None = None,
    until: str | None = None,
    components: set[str] | None = None,
    jobs: int | None = None,
    progress: ScanProgress | None = None,
) -> StatsReport:
    """Statistics per component from every file under ``directory``.

    ``since`` / ``until`` are timestamps in the lines' format (inclusive);
    ``components`` filters by component name (``worker_open``, ``dispatcher``).
    """
    files = [f for f in discover(directory) if not f.shared]
    if components is not None:
        files = [f for f in files if f.stem in components]
    bounds = (since.encode() if since else None, until.encode() if until else None)
    merged: dict[str, PeriodStats] = {}
    for partial_stats in map_files(partial(_scan_file, bounds), files, jobs, progress):
        for name, stats in partial_stats.items():
            if components is not None and name not in components:
                continue
            if name in merged:
                merged[name].merge(stats)
            else:
                merged[name] = stats
    return StatsReport(merged, [f.name for f in files], since, until)
