"""``execflow.safetext``: outside text shown with every dangerous character escaped."""

from __future__ import annotations

import json
import sys
import unicodedata
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from execflow.safetext import cell, html_text, json_text, markup, safe_text

# What an LP (or anyone writing into a DLQ row, a database column or a log file) can send.
HOSTILE = (
    "\x1b[2J\x1b[H"  # clear the screen, cursor home
    "\x9b31m"  # the 8-bit CSI
    "\x85\u2028\u2029"  # NEL and the Unicode line / paragraph separators
    "\x7f\x00\x07\x08\t\r\n"  # DEL, NUL, BEL, backspace, TAB, CR, LF
    "\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"  # bidi overrides and isolates
    "\u200b\ufeff\U000e0041"  # zero width space, BOM, a tag character
    "[bold red]x[/] [/]"  # Rich markup, and a closing tag that raises when parsed
)
# Dangerous for a terminal or a reader: controls, line breaks, format characters.
_DANGEROUS_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def dangerous(text: str) -> list[str]:
    """The characters of ``text`` that must never be printed raw (newline aside)."""
    return [c for c in text if c != "\n" and unicodedata.category(c) in _DANGEROUS_CATEGORIES]


def test_safe_text_escapes_every_control_and_format_character() -> None:
    shown = safe_text(HOSTILE)
    assert dangerous(shown) == []
    assert "\n" not in shown
    assert shown.startswith(
        "\\x1b[2J\\x1b[H\\x9b31m\\x85\\u2028\\u2029\\x7f\\x00\\x07\\x08\\t\\r\\n"
    )
    assert "\\u202e\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c" in shown
    assert "\\u200b\\ufeff\\U000e0041" in shown


def test_safe_text_keeps_printable_text_and_makes_escapes_unambiguous() -> None:
    assert safe_text("EURUSD live:6 Überweisung 取引 🙂") == "EURUSD live:6 Überweisung 取引 🙂"
    # a value that spells an escape cannot pass for one that was escaped
    assert safe_text("\\x1b") == "\\\\x1b"
    assert safe_text("\x1b") == "\\x1b"
    assert safe_text(Decimal("1.27003")) == "1.27003"
    assert safe_text(None) == "None"


def test_keep_newlines_keeps_only_the_line_feed() -> None:
    assert safe_text("a\nb\r\x1bc", keep_newlines=True) == "a\nb\\r\\x1bc"


@given(st.text())
def test_safe_text_never_lets_a_dangerous_character_through(text: str) -> None:
    assert dangerous(safe_text(text)) == []
    assert "\n" not in safe_text(text)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(), lambda children: (
    st.lists(children) | st.dictionaries(st.text(), children)
)))  # fmt: skip
def test_json_text_round_trips_and_escapes(document: object) -> None:
    for indent in (False, True):
        text = json_text(document, indent=indent)
        assert dangerous(text) == []
        if not indent:
            assert "\n" not in text
        assert json.loads(text) == document


def test_json_text_escapes_what_orjson_and_json_leave_raw() -> None:
    text = json_text({"error": HOSTILE, "big": 2**70, "px": Decimal("1.5")})
    assert dangerous(text) == []
    for raw, escaped in (("\x7f", "\\u007f"), ("\x85", "\\u0085"), ("\x9b", "\\u009b")):
        assert raw not in text and escaped in text
    assert "\\u2028" in text and "\\u202e" in text and "\\udb40\\udc41" in text
    assert json.loads(text) == {"error": HOSTILE, "big": 2**70, "px": "1.5"}


def test_json_text_lone_surrogate() -> None:
    text = json_text(["a\ud800b"])
    assert text == '["a\\ud800b"]'
    assert json.loads(text) == ["a\ud800b"]


def test_html_text_escapes_markup_and_controls() -> None:
    assert html_text('<script>"\x1b') == "&lt;script&gt;&quot;\\x1b"
    assert html_text("a\nb\x85", keep_newlines=True) == "a\nb\\x85"


def _rendered(*objects: object) -> str:
    console = Console(file=sys.stdout, width=200, force_terminal=False, color_system=None)
    with console.capture() as captured:
        console.print(*objects)
    return captured.get()


def test_rich_cell_and_markup_are_never_parsed_as_markup() -> None:
    shown = _rendered(cell(HOSTILE))
    assert dangerous(shown) == []
    assert "[bold red]x[/] [/]" in shown
    shown = _rendered(f"[green]ok[/] {markup(HOSTILE)}")
    assert dangerous(shown) == []
    assert shown.startswith("ok \\x1b[2J")
    assert "[bold red]x[/] [/]" in shown
