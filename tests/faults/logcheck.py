"""Strict reader of the log contract (docs/log-format.md) for the fault and security tests.

Every line of every file must be exactly one event: a text line is timestamp, level,
logger, ``[TAG]`` and ``key=value`` fields (bare, or a JSON string literal), a JSON line
is one object with ``@timestamp``. Nothing else may appear: no raw control character,
no U+2028/U+2029/U+0085 (Python's ``splitlines`` would cut there), no partial line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DirReport", "LogProblem", "ParsedLine", "check_dir", "parse_strict"]

_HEAD = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)"
    r" (?P<logger>[A-Za-z_][A-Za-z0-9_.]*) \[(?P<tag>[A-Za-z0-9_:]+)\]"
)
_KEY = r"[A-Za-z_][A-Za-z0-9_.]*"
_BARE = r"[^\s\"=\\\x00-\x1f\x7f\x80-\x9f\u2028\u2029]+"
_QUOTED = r"\"(?:[^\"\\\x00-\x1f]|\\.)*\""
_FIELD = re.compile(rf" (?P<key>{_KEY})=(?P<value>{_QUOTED}|{_BARE})")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\x80-\x9f\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """One event: its fixed parts and decoded fields."""

    timestamp: str
    level: str
    logger: str
    tag: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LogProblem:
    """A line that breaks the contract."""

    file: str
    number: int
    line: str
    why: str


@dataclass(slots=True)
class DirReport:
    """Every event of a directory, by file, and every problem found."""

    events: dict[str, list[ParsedLine]] = field(default_factory=dict)
    problems: list[LogProblem] = field(default_factory=list)

    def all_events(self) -> list[ParsedLine]:
        """Every event of every file."""
        return [event for events in self.events.values() for event in events]


def parse_strict(line: str) -> ParsedLine:
    """Parse one line or raise ``ValueError`` saying why it is not one event."""
    found = _FORBIDDEN.search(line)
    if found:
        raise ValueError(f"raw control character {found.group()!r}")
    if line.startswith("{"):
        data = json.loads(line)
        if not isinstance(data, dict) or "@timestamp" not in data:
            raise ValueError("JSON line without @timestamp")
        return ParsedLine(
            str(data["@timestamp"]),
            str(data.get("log.level")),
            str(data.get("log.logger")),
            str(data.get("event.action")),
            data,
        )
    head = _HEAD.match(line)
    if head is None:
        raise ValueError("no timestamp/level/logger/tag head")
    fields: dict[str, Any] = {}
    position = head.end()
    while position < len(line):
        match = _FIELD.match(line, position)
        if match is None:
            raise ValueError(f"not a key=value field at column {position}")
        raw = match["value"]
        fields[match["key"]] = json.loads(raw) if raw.startswith('"') else raw
        position = match.end()
    return ParsedLine(head["ts"], head["level"], head["logger"], head["tag"], fields)


def check_dir(directory: Path) -> DirReport:
    """Parse every line of every file under ``directory`` (rotated files included)."""
    report = DirReport()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if path.suffix == ".gz":
            continue
        data = path.read_bytes()
        name = path.name
        events = report.events.setdefault(name, [])
        if data and not data.endswith(b"\n"):
            report.problems.append(LogProblem(name, 0, data[-200:].decode(errors="replace"),
                                              "file does not end with a newline"))  # fmt: skip
        text = data.decode("utf-8")
        for number, line in enumerate(text.split("\n")[:-1] if text else [], start=1):
            try:
                events.append(parse_strict(line))
            except ValueError as exc:
                report.problems.append(LogProblem(name, number, line[:300], str(exc)))
    return report
