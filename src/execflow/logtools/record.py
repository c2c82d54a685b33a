"""One parsed log line, and the parser for both line formats of docs/log-format.md."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["LogRecord", "decode_fields", "parse_line"]

# key=value, the value either bare (no space) or a JSON string literal.
_FIELD = re.compile(r'([A-Za-z_][A-Za-z0-9_.]*)=("(?:[^"\\]|\\.)*"|[^ ]*)')

# JSON (ECS-style) keys mapped onto the names the text format uses.
_JSON_RENAMES = {
    "trace.id": "trace_id",
    "error.type": "error_type",
    "error.message": "error",
    "error.stack_trace": "traceback",
    "user.id": "user",
}
# Keys every JSON line has (the ECS header); not fields of the event.
_JSON_FIXED = (
    "@timestamp",
    "log.level",
    "log.logger",
    "event.action",
    "message",
    "ecs.version",
    "service.name",
)


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One log event, whatever its format; ``file`` is the name of the file it came from."""

    ts: str
    level: str
    logger: str
    tag: str
    fields: dict[str, Any] = field(default_factory=dict)
    file: str = ""

    @property
    def component(self) -> str:
        """``provider.worker.open`` -> ``worker_open``; other loggers keep their name."""
        return component_of(self.logger)

    def get(self, key: str) -> str | None:
        """A field as text (``None`` when absent)."""
        value = self.fields.get(key)
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for ``--json`` output."""
        return {
            "file": self.file,
            "ts": self.ts,
            "level": self.level,
            "logger": self.logger,
            "tag": self.tag,
            "fields": self.fields,
        }


def component_of(logger: str) -> str:
    """The component a logger name belongs to."""
    if logger.startswith("provider."):
        return logger[len("provider.") :].replace(".", "_")
    return logger


def decode_fields(text: str) -> dict[str, Any]:
    """Decode ``key=value`` pairs; quoted values are JSON string literals."""
    fields: dict[str, Any] = {}
    for match in _FIELD.finditer(text):
        key, raw = match.group(1), match.group(2)
        if raw.startswith('"'):
            try:
                fields[key] = json.loads(raw)
            except ValueError:
                fields[key] = raw
        else:
            fields[key] = raw
    return fields


def _parse_json(line: bytes | str, file: str) -> LogRecord | None:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or "@timestamp" not in data:
        return None
    fields = {_JSON_RENAMES.get(str(k), str(k)): v for k, v in data.items() if k not in _JSON_FIXED}
    return LogRecord(
        ts=str(data["@timestamp"]),
        level=str(data.get("log.level", "")),
        logger=str(data.get("log.logger", "")),
        tag=str(data.get("event.action", "")),
        fields=fields,
        file=file,
    )


def _parse_text(line: str, file: str) -> LogRecord | None:
    parts = line.split(" ", 3)
    if len(parts) < 3 or not parts[0].endswith("Z"):
        return None
    ts, level, logger = parts[0], parts[1], parts[2]
    rest = parts[3] if len(parts) == 4 else ""
    tag = ""
    if rest.startswith("["):
        end = rest.find("]")
        if end > 0:
            tag, rest = rest[1:end], rest[end + 1 :]
    return LogRecord(
        ts=ts, level=level, logger=logger, tag=tag, fields=decode_fields(rest), file=file
    )


def parse_line(line: bytes | str, file: str = "") -> LogRecord | None:
    """Parse one line of either format (JSON when it starts with ``{``); ``None`` if not one."""
    if isinstance(line, bytes):
        line = line.rstrip(b"\r\n")
        if line.startswith(b"{"):
            return _parse_json(line, file)
        return _parse_text(line.decode("utf-8", "replace"), file)
    line = line.rstrip("\r\n")
    if line.startswith("{"):
        return _parse_json(line, file)
    return _parse_text(line, file)
