"""Records back to one readable line (text format), optionally coloured for a terminal.

A log file is outside data (anyone who can write a field, or the file, chooses its
bytes): every part of a record is shown through ``execflow.safetext``.
"""

from __future__ import annotations

import re
from typing import Any

from rich.text import Text

from execflow.logtools.record import LogRecord
from execflow.safetext import json_text, safe_text

__all__ = ["LEVEL_STYLES", "field_text", "record_line", "record_text"]

LEVEL_STYLES = {
    "DEBUG": "dim",
    "INFO": "green",
    "WARNING": "yellow",
    "ERROR": "bold red",
    "CRITICAL": "bold white on red",
}
# A printable value is written bare unless it holds one of these; anything else becomes
# a JSON string literal (non-printables as \uXXXX, see execflow.safetext).
_QUOTE_IF = re.compile(r'[ "=\\]')


def field_text(value: Any) -> str:
    """A value as the text format writes it: bare when safe, else a JSON string literal."""
    text = value if isinstance(value, str) else json_text(value)
    if text and text.isprintable() and _QUOTE_IF.search(text) is None:
        return text
    return json_text(text)


def record_line(record: LogRecord, *, with_file: bool = True) -> str:
    """``file | ts LEVEL logger [TAG] k=v ...`` on one line."""
    fields = " ".join(f"{safe_text(k)}={field_text(v)}" for k, v in record.fields.items())
    head = f"{safe_text(record.file)} | " if with_file else ""
    tag = f" [{safe_text(record.tag)}]" if record.tag else ""
    ts, level, logger = safe_text(record.ts), safe_text(record.level), safe_text(record.logger)
    return f"{head}{ts} {level} {logger}{tag} {fields}".rstrip()


def record_text(record: LogRecord, *, with_file: bool = True) -> Text:
    """The same line as ``record_line``, styled for Rich."""
    text = Text()
    if with_file:
        text.append(f"{safe_text(record.file)} ", style="cyan")
        text.append("| ", style="dim")
    text.append(safe_text(record.ts) + " ", style="dim")
    text.append(safe_text(record.level), style=LEVEL_STYLES.get(record.level, ""))
    text.append(f" {safe_text(record.logger)} ", style="blue")
    if record.tag:
        text.append(f"[{safe_text(record.tag)}]", style="bold magenta")
    for key, value in record.fields.items():
        text.append(f" {safe_text(key)}=", style="dim")
        text.append(field_text(value))
    return text
