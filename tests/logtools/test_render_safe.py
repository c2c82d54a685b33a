"""A log record from a hostile file renders without raw controls, plain or coloured."""

from __future__ import annotations

import io
import re

from rich.console import Console

from execflow.logtools.record import LogRecord
from execflow.logtools.render import field_text, record_line, record_text
from tests.hostile import HOSTILE, raw_controls

# Rich's own styling on a terminal: SGR sequences only (ESC [ ... m).
_SGR = re.compile(r"\x1b\[[0-9;]*m")

RECORD = LogRecord(
    ts=f"2026-12-05T10:00:00Z{HOSTILE}",
    level=f"ERROR{HOSTILE}",
    logger=f"provider.{HOSTILE}",
    tag=f"CLOSE:{HOSTILE}",
    fields={"order_id": "3163458366000", HOSTILE: HOSTILE, "n": {"k": HOSTILE}},
    file=f"worker_close{HOSTILE}.log",
)


def test_field_text_quotes_and_escapes_del_c1_and_bidi() -> None:
    assert field_text("EURUSD") == "EURUSD"
    assert field_text("Überweisung") == "Überweisung"
    for raw, escaped in (("\x7f", "\\u007f"), ("\x9b", "\\u009b"), ("\u202e", "\\u202e")):
        assert field_text(f"a{raw}b") == f'"a{escaped}b"'


def test_plain_line_has_no_raw_control() -> None:
    line = record_line(RECORD)
    assert raw_controls(line) == []
    assert "\n" not in line


def test_terminal_line_has_only_rich_styling() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="truecolor", width=10_000)
    console.print(record_text(RECORD), soft_wrap=True)
    shown = _SGR.sub("", out.getvalue())
    assert raw_controls(shown) == []
    assert shown.count("\n") == 1
    assert "[bold red]x[/] [/]" in shown
