"""Children that run another source tree, for the bench scripts with ``--baseline-src``.

A bench compares this tree with a baseline (e.g. ``git archive REV src | tar -x -C
/tmp/base``) by running each measured pass in a child process whose ``execflow`` is
imported from that tree. Imported by name, like ``_cachegrind``: a script run as
``python bench/<script>.py`` has ``bench/`` first on ``sys.path``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["run_child", "tree_env"]


def tree_env(src: Path | None, **extra: str) -> dict[str, str]:
    """This process's environment plus ``extra``, importing ``execflow`` from ``src``
    (``None``: the tree the bench runs from, as the parent does)."""
    env = {**os.environ, **extra}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def run_child(command: Sequence[str], env: dict[str, str]) -> str:
    """Run ``command`` with ``env``; its standard output.

    A child that fails stops the bench with its exit code and the end of its standard
    error, so that a broken tree never reads as a figure.
    """
    done = subprocess.run(list(command), env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child {command[1:3]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout
