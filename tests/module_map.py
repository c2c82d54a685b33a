"""Render docs/modules.md: every module of the package with the first line of its docstring.

    python -m tests.module_map > docs/modules.md

``tests/test_house.py`` fails when the file on disk differs from what this renders, so
the map cannot go stale: a module added, removed or re-described shows up there.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "execflow"


def _summary(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    return first.replace("|", "\\|")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["type"] == "layers":
            return [str(layer) for layer in contract["layers"]]
    raise LookupError("no layers contract in pyproject.toml")


def render() -> str:
    """The whole of docs/modules.md."""
    out = [
        "# Module map",
        "",
        "Every module of `src/execflow`, with the first paragraph of its docstring. Generated:",
        "`python -m tests.module_map > docs/modules.md` (`tests/test_house.py` fails when",
        "this file is stale).",
        "",
        "## Layers",
        "",
        "Each package imports only the layers below it (the import-linter contract in",
        "`pyproject.toml`, checked by `make lint`); `a | b` are siblings that do not import",
        "each other.",
        "",
        "```",
        *_layers(),
        "```",
    ]
    top = sorted(p for p in PACKAGE.glob("*.py"))
    packages = sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    groups: list[tuple[str, list[Path]]] = [("execflow", top)]
    for package in packages:
        groups.append((_module_name(package / "__init__.py"), sorted(package.rglob("*.py"))))
    for title, files in groups:
        out += ["", f"## `{title}`", ""]
        out += ["| module | what it is |", "|---|---|"]
        out += [f"| `{_module_name(p)}` | {_summary(p)} |" for p in files]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
