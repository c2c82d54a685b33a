"""docs/domain.md is generated from the code's own tables and must not drift."""

from __future__ import annotations

from pathlib import Path

from execflow.domain.docs import render_markdown
from execflow.domain.enums import RequestKind
from execflow.domain.statemachine import ORDER_EDGES

DOC = Path(__file__).resolve().parents[2] / "docs" / "domain.md"


def test_docs_match_the_generated_text() -> None:
    assert DOC.read_text(encoding="utf-8") == render_markdown(), (
        "docs/domain.md is stale: python -m execflow.domain.docs > docs/domain.md"
    )


def test_generated_text_contains_every_row() -> None:
    text = render_markdown()
    assert all(f"| {kind.value} |" in text for kind in RequestKind)
    assert text.count("\n| ") >= len(ORDER_EDGES)
