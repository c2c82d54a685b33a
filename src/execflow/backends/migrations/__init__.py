"""Alembic migrations of the execflow database, run programmatically by ``SqlDatabase``.

``shipped_head`` names the newest revision from the scripts' text, without importing
Alembic (which brings Mako and Pygments): ``SqlDatabase.connect`` compares it with the
database's ``alembic_version`` and loads Alembic only when there is something to apply.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["MIGRATIONS_DIR", "shipped_head"]

MIGRATIONS_DIR = Path(__file__).parent
# ``revision = "0004_lp_executions"`` / ``down_revision: str | None = "0003_api"`` at the
# start of a line, as every script here writes them
_ASSIGNED = re.compile(
    r"^(?P<name>revision|down_revision)\s*(?::[^=\n]*)?=\s*(?P<value>.+?)\s*$", re.MULTILINE
)
_QUOTED = re.compile(r"""^(["'])([^"']+)\1$""")


def _revision_pair(text: str) -> tuple[str, str | None] | None:
    """``(revision, down_revision)`` of one script, or ``None`` if either is not plain."""
    found = {match["name"]: match["value"] for match in _ASSIGNED.finditer(text)}
    revision = _QUOTED.match(found.get("revision", ""))
    down = found.get("down_revision")
    if revision is None or down is None:
        return None
    if down == "None":
        return revision[2], None
    parent = _QUOTED.match(down)
    return (revision[2], parent[2]) if parent is not None else None


def shipped_head(directory: Path = MIGRATIONS_DIR / "versions") -> str | None:
    """The one head revision of the scripts in ``directory``, read as text.

    ``None`` when it cannot be told for sure (a script whose ids are not plain strings, a
    merge, several heads): the caller then asks Alembic, which knows every form.
    """
    revisions: dict[str, str | None] = {}
    for path in sorted(directory.glob("*.py")):
        if path.name == "__init__.py":
            continue
        pair = _revision_pair(path.read_text(encoding="utf-8"))
        if pair is None:
            return None
        revisions[pair[0]] = pair[1]
    parents = {down for down in revisions.values() if down is not None}
    heads = [revision for revision in revisions if revision not in parents]
    return heads[0] if len(heads) == 1 else None
