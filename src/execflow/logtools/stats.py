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
from execflow.logtools.record import component_of
from execflow.logtools.scan import map_files
from execflow.logtools.timeutil import parse_ts

__all__ = ["ComponentStats", "StatsReport", "collect_stats", "percentile"]

_OUTCOMES = rb"SUCCESS|ERROR|SKIP:DUPLICATE|SKIP:STALE|PARKED|DLQ|RETRY|ROUTED|IGNORED"
_TEXT = re.compile(
    rb"\n(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z) [A-Z]+ provider\.(\S+) \[[A-Z_]+:("
    + _OUTCOMES
    + rb")\]([^\n]*)"
)
_JSON = re.compile(
    rb'\n\{"@timestamp":"([^"]+)","log\.level":"[A-Z]+","log\.logger":"provider\.([^"]+)",'
    rb'"event\.action":"[A-Z_]+:(' + _OUTCOMES + rb')"([^\n]*)'
)
_JSON_CANONICAL = b'\n{"@timestamp":"'
_OUTCOME_SUFFIXES = tuple(":" + o for o in _OUTCOMES.decode().split("|"))

_SUCCESS = {b"SUCCESS", b"ROUTED"}
_SKIPPED = {b"SKIP:DUPLICATE", b"SKIP:STALE", b"IGNORED"}


@dataclass
class ComponentStats:
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
    per_minute: Counter[str] = field(default_factory=Counter)
    errors_per_minute: Counter[str] = field(default_factory=Counter)
    dlq_per_minute: Counter[str] = field(default_factory=Counter)
    first_ts: str | None = None
    last_ts: str | None = None

    def merge(self, other: ComponentStats) -> None:
        """Add ``other``'s counts into this one."""
        for name in ("processed", "success", "failure", "skipped", "parked", "retried"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.dead_lettered += other.dead_lettered
        for mine, theirs in (
            (self.dlq_reasons, other.dlq_reasons),
            (self.times_ms, other.times_ms),
            (self.per_minute, other.per_minute),
            (self.errors_per_minute, other.errors_per_minute),
            (self.dlq_per_minute, other.dlq_per_minute),
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

    components: dict[str, ComponentStats]
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
        self.stats: dict[bytes, ComponentStats] = {}
        self.times: dict[bytes, dict[bytes, int]] = {}

    def add(self, ts: bytes, logger: bytes, outcome: bytes, rest: bytes) -> None:
        if (self.since is not None and ts < self.since) or (
            self.until is not None and ts > self.until
        ):
            return
        stats = self.stats.get(logger)
        if stats is None:
            stats = self.stats[logger] = ComponentStats()
            self.times[logger] = {}
        ts_text = ts.decode()
        if stats.first_ts is None or ts_text < stats.first_ts:
            stats.first_ts = ts_text
        if stats.last_ts is None or ts_text > stats.last_ts:
            stats.last_ts = ts_text
        minute = ts_text[:16]
        if outcome == b"PARKED":
            stats.parked += 1
            return
        if outcome == b"RETRY":
            stats.retried += 1
            return
        stats.processed += 1
        stats.per_minute[minute] += 1
        if outcome in _SUCCESS:
            stats.success += 1
            value = _field_value(rest, b"processing_time_ms=", b'"processing_time_ms":')
            if value:
                times = self.times[logger]
                times[value] = times.get(value, 0) + 1
        elif outcome in _SKIPPED:
            stats.skipped += 1
        elif outcome == b"ERROR":
            stats.failure += 1
            stats.errors_per_minute[minute] += 1
        else:  # DLQ
            stats.dead_lettered += 1
            stats.dlq_per_minute[minute] += 1
            reason = _field_value(rest, b"reason=", b'"reason":') or b"unknown"
            stats.dlq_reasons[reason.decode("utf-8", "replace")] += 1

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

    def result(self) -> dict[str, ComponentStats]:
        out: dict[str, ComponentStats] = {}
        for logger, stats in self.stats.items():
            for raw, count in self.times[logger].items():
                try:
                    stats.times_ms[float(raw)] += count
                except ValueError:
                    continue
            name = component_of("provider." + logger.decode())
            if name in out:
                out[name].merge(stats)
            else:
                out[name] = stats
        return out


def _scan_file(
    bounds: tuple[bytes | None, bytes | None], log_file: LogFile
) -> dict[str, ComponentStats]:
    """Counts of one file (runs in a worker process for big scans)."""
    tally = _Tally(*bounds)
    add = tally.add
    for block in iter_blocks(log_file):
        data = b"\n" + block
        for ts, logger, outcome, rest in _TEXT.findall(data):
            add(ts, logger, outcome, rest)
        json_lines = data.count(b"\n{")
        if not json_lines:
            continue
        for ts, logger, outcome, rest in _JSON.findall(data):
            add(ts, logger, outcome, rest)
        if data.count(_JSON_CANONICAL) != json_lines:
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
) -> StatsReport:
    """Statistics per component from every file under ``directory``.

    ``since`` / ``until`` are timestamps in the lines' format (inclusive);
    ``components`` filters by component name (``worker_open``, ``dispatcher``).
    """
    files = [f for f in discover(directory) if not f.shared]
    if components is not None:
        files = [f for f in files if f.stem in components]
    bounds = (since.encode() if since else None, until.encode() if until else None)
    merged: dict[str, ComponentStats] = {}
    for partial_stats in map_files(partial(_scan_file, bounds), files, jobs):
        for name, stats in partial_stats.items():
            if components is not None and name not in components:
                continue
            if name in merged:
                merged[name].merge(stats)
            else:
                merged[name] = stats
    return StatsReport(merged, [f.name for f in files], since, until)
