"""Show text that came from outside (LP, client, database, log files) without letting it act.

An LP's free text can hold ESC sequences, the 8-bit CSI (U+009B), NEL, U+2028/U+2029 or
bidi overrides: printed raw, they clear or rewrite an operator's screen, forge a line or
reorder what is read. Every command that prints outside data renders it through here:

- ``safe_text``: one value on one line; every character Python does not call printable
  (``str.isprintable``: categories Cc, Cf, Cs, Co, Cn, Zl, Zp and every space but the
  ASCII one) is written as a Python-style escape (``\\x1b``, ``\\u202e``, ``\\n``), and a
  backslash as ``\\\\`` so an escape can never be mistaken for text that spells one.
- ``json_text``: a JSON document whose strings carry those characters as ``\\uXXXX``
  (orjson and the stdlib leave DEL, C1, U+2028/U+2029 and bidi controls raw).
- ``html_text``: ``safe_text`` then HTML-escaped, for the HTML report.
- ``cell`` / ``markup``: for Rich, as a ``Text`` (never parsed as markup) or as markup-
  escaped text to splice into a markup string (``[bold]`` in a value stays literal).

``str.isprintable`` is the rule rather than a hand-kept list of categories because it is
maintained with Python's Unicode database (new format characters are covered when Python
updates), runs in C, and errs on the safe side (unassigned and private-use code points,
which a terminal may draw as anything, are escaped too).

Rich is imported by ``cell`` and ``markup`` only, when a terminal table or markup is
drawn: a pipeline process escapes text for its logs without loading Rich (docs/benchmarks.md,
"Memory").
"""

from __future__ import annotations

import html
import json
import re
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["cell", "html_text", "json_text", "markup", "safe_text"]

# Candidates for escaping: everything outside printable ASCII, plus the backslash. The
# callback keeps the printable ones (accents, CJK, emoji) as they are.
_CANDIDATE = re.compile(r"[^\x20-\x5b\x5d-\x7e]")
_CANDIDATE_KEEP_LF = re.compile(r"[^\n\x20-\x5b\x5d-\x7e]")
# In JSON text a backslash is already an escape and the structural whitespace orjson's
# indentation writes is "\n" and " ": only non-ASCII characters need a second look.
_JSON_CANDIDATE = re.compile(r"[^\n\x20-\x7e]")
_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _text_sub(match: re.Match[str]) -> str:
    char = match[0]
    return char if char.isprintable() and char != "\\" else _escape(char)


def safe_text(value: object, *, keep_newlines: bool = False) -> str:
    """``str(value)`` with backslashes and every non-printable character escaped.

    With ``keep_newlines`` a ``\\n`` stays a line break (a traceback shown as a block);
    CR and every other control character are still escaped.
    """
    text = value if isinstance(value, str) else str(value)
    pattern = _CANDIDATE_KEEP_LF if keep_newlines else _CANDIDATE
    if pattern.search(text) is None:
        return text
    return pattern.sub(_text_sub, text)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    # JSON has no 6-digit escape: a code point above the BMP is a UTF-16 surrogate pair.
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _json_sub(match: re.Match[str]) -> str:
    char = match[0]
    return char if char.isprintable() else _json_escape(char)


def json_text(document: Any, *, indent: bool = False) -> str:
    """``document`` as JSON with every non-printable character in a string as ``\\uXXXX``.

    Values orjson cannot take (integers beyond 64 bits, lone surrogates, deep nesting)
    go through the stdlib encoder; anything else unknown is written as ``str(value)``.
    """
    try:
        option = orjson.OPT_INDENT_2 if indent else 0
        text = orjson.dumps(document, default=str, option=option).decode()
    except (orjson.JSONEncodeError, TypeError):
        text = json.dumps(document, default=str, ensure_ascii=False, indent=2 if indent else None)
    # Raw non-ASCII characters occur only inside strings (the encoders escape C0 there and
    # write nothing else raw outside them), so each can be replaced in place.
    if _JSON_CANDIDATE.search(text) is None:
        return text
    return _JSON_CANDIDATE.sub(_json_sub, text)


def html_text(value: object, *, keep_newlines: bool = False) -> str:
    """``safe_text(value)`` escaped for HTML (element content and quoted attributes)."""
    return html.escape(safe_text(value, keep_newlines=keep_newlines))


def cell(value: object) -> Text:
    """A Rich ``Text`` of ``safe_text(value)``: a table cell Rich never parses as markup."""
    from rich.text import Text

    return Text(safe_text(value))


def markup(value: object) -> str:
    """``safe_text(value)`` with Rich markup escaped, to splice into a markup string."""
    from rich.markup import escape

    return escape(safe_text(value))
