"""The house rules that no linter checks by itself."""

from __future__ import annotations

import ast
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


_ENV_READERS = {"environ", "getenv", "putenv", "unsetenv", "environb", "getenvb"}
_ENV_MUTATORS = {"setdefault", "update", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


def _environment_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """Every ``os.environ`` / ``os.getenv`` / ... in ``tree``, and each write ("write ...")."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in _ENV_READERS:
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                found.append((node.lineno, f"os.{node.attr}"))
                if node.attr in {"putenv", "unsetenv"}:
                    found.append((node.lineno, f"write: os.{node.attr}"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in _ENV_MUTATORS and "environ" in ast.unparse(node.func.value):
                found.append((node.lineno, f"write: os.environ.{node.func.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [
                (node.lineno, f"from os import {a.name}")
                for a in node.names
                if a.name in _ENV_READERS
            ]
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            found += [
                (node.lineno, "write: os.environ[...]")
                for target in targets
                if isinstance(target, ast.Subscript) and "environ" in ast.unparse(target.value)
            ]
    return found


def test_only_settings_reads_the_environment_and_nothing_writes_it() -> None:
    package = ROOT / "src" / "execflow"
    uses: dict[str, list[tuple[int, str]]] = {}
    for path in sorted(package.rglob("*.py")):
        found = _environment_uses(ast.parse(path.read_text(encoding="utf-8")))
        if found:
            uses[str(path.relative_to(package))] = found
    settings = uses.pop("settings.py", [])
    assert settings  # the scan sees the one reader (an empty walk would pass anything)
    assert [use for use in settings if use[1].startswith("write")] == []
    assert uses == {}


def test_the_environment_scan_sees_reads_and_writes() -> None:
    source = (
        "import os\nfrom os import getenv\n"
        "os.environ['A'] = '1'\nos.environ.setdefault('B', '2')\nx = os.getenv('C')\n"
        "os.putenv('D', '4')\n"
    )
    kinds = sorted(kind for _line, kind in _environment_uses(ast.parse(source)))
    assert kinds == sorted(
        [
            "from os import getenv",
            "os.environ",
            "write: os.environ[...]",
            "os.environ",
            "write: os.environ.setdefault",
            "os.getenv",
            "os.putenv",
            "write: os.putenv",
        ]
    )
