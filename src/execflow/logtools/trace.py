"""``logs trace``: every line about one order, from every file, in time order.

Pass 1 scans every file for the order id (a byte-level pre-filter, then an exact check
on the parsed field) and collects the order's ``trace_id`` values. Pass 2 looks for lines
that carry one of those trace ids without the order id (e.g. the dispatcher's line
before it resolved the lifecycle id); since a report's lines are written within
seconds of each other, it only scans files whose time span meets the order's lines,
widened by ``window_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from execflow.logtools.files import LogFile, discover, iter_blocks
from execflow.logtools.record import LogRecord, parse_line
from execflow.logtools.scan import lines_containing, map_files
from execflow.logtools.timeutil import shift_ts

__all__ = ["TraceResult", "order_needles", "trace_needles", "trace_order"]

_FIRST_LINE_PROBE_BYTES = 64 * 1024
_MIN_ANCHOR = 4


@dataclass(frozen=True, slots=True)
class TraceResult:
    """The lines about an order, in time order, and the trace ids they carried."""

    order_id: str
    records: list[LogRecord]
    trace_ids: list[str]
    files_scanned: int


def order_needles(order_id: str) -> list[bytes]:
    """Byte strings one of which every line about ``order_id`` contains (text or JSON)."""
    raw = order_id.encode()
    needles = [b"order_id=" + raw, b'"order_id":"' + raw + b'"']
    if order_id.isdigit():
        needles.append(b'"order_id":' + raw)
    return needles


def trace_needles(trace_id: str) -> list[bytes]:
    """Byte strings one of which every line carrying ``trace_id`` contains."""
    raw = trace_id.encode()
    return [b"trace_id=" + raw, b'"trace.id":"' + raw + b'"', b'"trace_id":"' + raw + b'"']


def _grep_file(needles: list[bytes], anchor: bytes, log_file: LogFile) -> list[bytes]:
    """Raw lines of one file holding any needle (runs in a worker process)."""
    out: list[bytes] = []
    for block in iter_blocks(log_file):
        out.extend(line for _, line in lines_containing(block, needles, anchor))
    return out


def _anchor(ids: list[str]) -> bytes:
    """One id that every needle holds: a single scan per block instead of one per needle."""
    # A very short id hits everywhere; then one scan per needle is cheaper.
    return ids[0].encode() if len(ids) == 1 and len(ids[0]) >= _MIN_ANCHOR else b""


def _first_ts(log_file: LogFile) -> str | None:
    for block in iter_blocks(log_file, _FIRST_LINE_PROBE_BYTES):
        for line in block.split(b"\n"):
            record = parse_line(line)
            if record is not None:
                return record.ts
        return None
    return None


def _time_spans(files: list[LogFile]) -> dict[Path, tuple[str | None, str | None]]:
    """Approximate ``(first_ts, last_ts)`` of each file from its and its successor's first line.

    Within one rotation set, backup N ends where backup N-1 (or the current file) starts.
    """
    spans: dict[Path, tuple[str | None, str | None]] = {}
    firsts = {f.path: _first_ts(f) for f in files}
    sets: dict[tuple[str, str, int], list[LogFile]] = {}
    for f in files:
        sets.setdefault((f.stem, f.qualifier, f.instance), []).append(f)
    for members in sets.values():
        members.sort(key=lambda f: -f.generation)  # oldest first
        for i, f in enumerate(members):
            newer = members[i + 1] if i + 1 < len(members) else None
            spans[f.path] = (firsts[f.path], firsts[newer.path] if newer else None)
    return spans


def _overlaps(span: tuple[str | None, str | None], lo: str, hi: str) -> bool:
    first, last = span
    if first is not None and first > hi:
        return False
    return not (last is not None and last < lo)


def _collect(
    files: list[LogFile],
    needles: list[bytes],
    key: str,
    wanted: set[str],
    jobs: int | None,
) -> list[tuple[int, int, LogRecord]]:
    found: list[tuple[int, int, LogRecord]] = []
    per_file = map_files(partial(_grep_file, needles, _anchor(sorted(wanted))), files, jobs)
    for file_index, (log_file, lines) in enumerate(zip(files, per_file, strict=True)):
        for line_index, line in enumerate(lines):
            record = parse_line(line, log_file.name)
            if record is not None and record.get(key) in wanted:
                found.append((file_index, line_index, record))
    return found


def _dedupe(records: list[LogRecord]) -> list[LogRecord]:
    """Drop the ``provider_errors.log`` copy of a line already read from its component file."""
    own = {
        (r.ts, r.logger, r.tag)
        for r in records
        if not r.file.startswith(("provider_errors", "orders_calculated"))
    }
    return [
        r
        for r in records
        if not (r.file.startswith("provider_errors") and (r.ts, r.logger, r.tag) in own)
    ]


def trace_order(
    directory: Path, order_id: str, *, jobs: int | None = None, window_s: float = 3600.0
) -> TraceResult:
    """Every line about ``order_id`` (and its trace ids) under ``directory``, in time order."""
    files = discover(directory)
    hits = _collect(files, order_needles(order_id), "order_id", {order_id}, jobs)
    trace_ids = sorted({tid for _, _, r in hits if (tid := r.get("trace_id"))})
    if trace_ids and hits:
        lo = shift_ts(min(r.ts for _, _, r in hits), -window_s)
        hi = shift_ts(max(r.ts for _, _, r in hits), window_s)
        spans = _time_spans(files)
        nearby = [f for f in files if _overlaps(spans[f.path], lo, hi)]
        needles = [n for tid in trace_ids for n in trace_needles(tid)]
        seen = {(files[fi].path, r.ts, r.logger, r.tag, r.get("trace_id")) for fi, _, r in hits}
        index = {f.path: i for i, f in enumerate(files)}
        for fi, li, r in _collect(nearby, needles, "trace_id", set(trace_ids), jobs):
            path = nearby[fi].path
            if (path, r.ts, r.logger, r.tag, r.get("trace_id")) not in seen and r.get(
                "order_id"
            ) in (None, order_id):
                hits.append((index[path], li, r))
    hits.sort(key=lambda h: (h[2].ts, h[0], h[1]))
    records = _dedupe([r for _, _, r in hits])
    return TraceResult(order_id, records, trace_ids, len(files))
