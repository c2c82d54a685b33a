"""The house rules that no linter checks by itself."""

from __future__ import annotations

import re
from pathlib import Path

from tests import module_map

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("src", "tests", "bench")
_DEF = re.compile(r"\s*(async\s+)?def\s")


def _python_files() -> list[Path]:
    return sorted(p for top in CHECKED for p in (ROOT / top).rglob("*.py"))


def test_every_function_over_the_complexity_cap_says_why() -> None:
    """A ``# noqa: C901`` stands on a def whose line above is a ``# C901: reason`` comment."""
    unexplained = []
    marks = 0
    for path in _python_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if not (_DEF.match(line) and "# noqa: C901" in line):
                continue
            marks += 1
            above = lines[number - 1].strip() if number else ""
            reason = above.removeprefix("# C901:").strip()
            if not above.startswith("# C901:") or not reason:
                unexplained.append(f"{path.relative_to(ROOT)}:{number + 1}")
    assert marks > 0  # the scan sees the marks (an empty walk would pass anything)
    assert unexplained == []


def test_the_module_map_names_every_module_as_generated() -> None:
    doc = (ROOT / "docs" / "modules.md").read_text(encoding="utf-8")
    assert doc == module_map.render(), (
        "docs/modules.md is stale: python -m tests.module_map > docs/modules.md"
    )
    modules = list((ROOT / "src" / "execflow").rglob("*.py"))
    assert doc.count("\n| `execflow") == len(modules)
