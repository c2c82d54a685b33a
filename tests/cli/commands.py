"""Every leaf command of the ``execflow`` app, read from the Typer app itself.

Tests that must cover every command (hostile output, one-line failures) compare their own
tables with ``leaf_commands()``, so a command added later fails them until it is covered.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer.main

from execflow.cli.app import app

__all__ = ["leaf_commands"]


def _walk(command: Any, path: tuple[str, ...]) -> Iterator[str]:
    children = getattr(command, "commands", None)
    if children is None:
        yield " ".join(path)
        return
    for name, child in children.items():
        yield from _walk(child, (*path, name))
    # a group that runs its own callback with no sub-command (``seed FILE``) is a command too
    if getattr(command, "invoke_without_command", False) and path:
        yield " ".join(path)


def leaf_commands() -> set[str]:
    """``{"dlq list", "run worker", "seed", ...}``: every command a user can run."""
    return set(_walk(typer.main.get_command(app), ()))
