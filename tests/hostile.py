"""Hostile text for output tests: what an LP, a database row or a log file can hold."""

from __future__ import annotations

import unicodedata

__all__ = ["HOSTILE", "raw_controls"]

# Visible marker first, so a test can see the value reached the output (escaped).
HOSTILE = (
    "HOSTILE\x1b[2J\x1b[H\x9b31m\x85\u2028\u2029\x7f\x07\x08\t\r\n"
    "\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u200b\ufeff\U000e0041"
    "[bold red]x[/] [/]"
)
_DANGEROUS = {"Cc", "Cf", "Cs", "Zl", "Zp", "Co"}


def raw_controls(text: str) -> list[str]:
    """Every character of ``text`` that must never reach a terminal raw (newline aside)."""
    return [f"U+{ord(c):04X}" for c in text if c != "\n" and unicodedata.category(c) in _DANGEROUS]
