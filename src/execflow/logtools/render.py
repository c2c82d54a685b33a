"""Records back to one readable line (text format), optionally coloured for a terminal."""

from __future__ import annotations

import json
import re
from typing import Any

from rich.text import Text

from execflow.logtools.record import LogRecord

__all__ = ["LEVEL_STYLES", "field_text", "record_line", "record_text"]

LEVEL_STYLES = {
    "DEBUG": "dim",
    "INFO": "green",
    "WARNING": "yellow",
    "ERROR": "bold red",
    "CRITICAL": "bold white on red",
}
_UNSAFE = re.compile('[\x00-\x20"=\\\\\x7f-\x9f\u2028\u2029]')


def field_text(value: Any) -> str:
    """A value as the text format writes it: bare when safe, else a JSON string literal."""
    text = value if isinstance(value, str) else json.dumps(value)
    if text and _UNSAFE.search(text) is None:
        return text
    return json.dumps(text)


def record_line(record: LogRecord, *, with_file: bool = True) -> str:
    """``file | ts LEVEL logger [TAG] k=v ...`` on one line."""
    fields = " ".join(f"{k}={field_text(v)}" for k, v in record.fields.items())
    head = f"{record.file} | " if with_file else ""
    tag = f" [{record.tag}]" if record.tag else ""
    return f"{head}{record.ts} {record.level} {record.logger}{tag} {fields}".rstrip()


def record_text(record: LogRecord, *, with_file: bool = True) -> Text:
    """The same line as ``record_line``, styled for Rich."""
    text = Text()
    if with_file:
        text.append(f"{record.file} ", style="cyan")
        text.append("| ", style="dim")
    text.append(record.ts + " ", style="dim")
    text.append(record.level, style=LEVEL_STYLES.get(record.level, ""))
    text.append(f" {record.logger} ", style="blue")
    if record.tag:
        text.append(f"[{record.tag}]", style="bold magenta")
    for key, value in record.fields.items():
        text.append(f" {key}=", style="dim")
        text.append(field_text(value))
    return text
