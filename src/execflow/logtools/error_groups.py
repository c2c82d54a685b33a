"""``logs errors``: ERROR and CRITICAL lines grouped by error type and component.

Every error is written twice, to its component's file and to ``provider_errors.log``;
the copies are merged (same time, logger and tag) and the one with a traceback is kept
as the example.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from execflow.logtools.files import LogFile, discover
from execflow.logtools.record import LogRecord, parse_line
from execflow.logtools.scan import ScanProgress, map_files, matching_lines

__all__ = ["ErrorGroup", "collect_errors", "error_records"]

_TEXT_ERROR = re.compile(rb"\n\S+ (?:ERROR|CRITICAL) [^\n]*")
_JSON_ERROR = re.compile(rb'\n\{[^\n]*"log\.level":"(?:ERROR|CRITICAL)"[^\n]*')


@dataclass
class ErrorGroup:
    """All errors of one type from one component."""

    error_type: str
    component: str
    count: int
    first_ts: str
    last_ts: str
    example: LogRecord

    def to_json(self) -> dict[str, Any]:
        """A plain dict for ``--json`` output."""
        return {
            "error_type": self.error_type,
            "component": self.component,
            "count": self.count,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "example": {
                "file": self.example.file,
                "ts": self.example.ts,
                "tag": self.example.tag,
                "error": self.example.get("error"),
                "order_id": self.example.get("order_id"),
                "trace_id": self.example.get("trace_id"),
                "traceback": self.example.get("traceback"),
            },
        }


def _error_lines(bounds: tuple[str | None, str | None], log_file: LogFile) -> list[bytes]:
    since, until = bounds
    out: list[bytes] = []
    for line in matching_lines(log_file, _TEXT_ERROR, _JSON_ERROR):
        ts = line[:27].decode("ascii", "replace") if not line.startswith(b"{") else None
        if ts is not None and ((since and ts < since) or (until and ts > until)):
            continue
        out.append(line)
    return out


def error_records(
    directory: Path,
    *,
    since: str | None = None,
    until: str | None = None,
    components: set[str] | None = None,
    jobs: int | None = None,
    progress: ScanProgress | None = None,
) -> list[LogRecord]:
    """Every distinct ERROR / CRITICAL record, in time order."""
    files = [f for f in discover(directory) if f.stem != "orders_calculated"]
    per_file = map_files(partial(_error_lines, (since, until)), files, jobs, progress)
    best: dict[tuple[str, str, str, str | None, str | None], LogRecord] = {}
    for log_file, lines in zip(files, per_file, strict=True):
        for line in lines:
            record = parse_line(line, log_file.name)
            if record is None or record.level not in ("ERROR", "CRITICAL"):
                continue
            if (since and record.ts < since) or (until and record.ts > until):
                continue
            if components is not None and record.component not in components:
                continue
            key = (
                record.ts,
                record.logger,
                record.tag,
                record.get("trace_id"),
                record.get("error"),
            )
            kept = best.get(key)
            if kept is None or (kept.get("traceback") is None and record.get("traceback")):
                best[key] = record
    return sorted(best.values(), key=lambda r: r.ts)


def collect_errors(
    directory: Path,
    *,
    since: str | None = None,
    until: str | None = None,
    components: set[str] | None = None,
    jobs: int | None = None,
    progress: ScanProgress | None = None,
) -> list[ErrorGroup]:
    """Errors grouped by ``(error_type, component)``, most frequent first."""
    groups: dict[tuple[str, str], ErrorGroup] = {}
    for record in error_records(
        directory, since=since, until=until, components=components, jobs=jobs, progress=progress
    ):
        key = (record.get("error_type") or record.tag or "unknown", record.component)
        group = groups.get(key)
        if group is None:
            groups[key] = ErrorGroup(key[0], key[1], 1, record.ts, record.ts, record)
            continue
        group.count += 1
        group.last_ts = record.ts
        if group.example.get("traceback") is None and record.get("traceback"):
            group.example = record
    return sorted(groups.values(), key=lambda g: (-g.count, g.error_type, g.component))
