"""JSON log lines escape what orjson leaves raw: DEL, C1 controls, U+2028/U+2029.

Found by the CR/LF/ANSI injection check of ``test_security.py``: ``orders_calculated.log``
(always JSON lines) carried a report's U+2028 and 8-bit CSI raw, so ``str.splitlines``
readers saw a forged line and a terminal ``cat`` ran the escape.
"""

from __future__ import annotations

import orjson

from execflow.logs.formatting import json_line

FORGED = "2026-11-29T00:00:00.000000Z CRITICAL provider.forged [FORGED:LINE] a=1"


def test_json_lines_escape_del_c1_and_unicode_line_separators() -> None:
    value = f"a\u2028{FORGED}\u2029b\x85c\x7fd\x9b31me"
    line = json_line("2026-11-29T00:00:00.000000Z", "INFO", "provider.x", "T:X", {"v": value}, {})
    text = line.decode("utf-8")
    assert text.endswith("\n") and len(text[:-1].splitlines()) == 1
    assert orjson.loads(line)["v"] == value
    for escaped in ("\\u2028", "\\u2029", "\\u0085", "\\u009b", "\\u007f"):
        assert escaped in text


def test_json_lines_keep_other_unicode_raw() -> None:
    line = json_line("t", "INFO", "provider.x", "T:X", {"v": "é€😀"}, {})
    assert "é€😀".encode() in line
