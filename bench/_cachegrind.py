"""Instructions of one process under cachegrind, for the bench scripts that count them.

Instruction counts do not move with the neighbours on this shared machine, unlike CPU
seconds; every counting bench runs its measured pass as a child process under
``valgrind --tool=cachegrind --cache-sim=no`` and reads the total (``I refs``) from its
report. Imported by name, like ``_workload``: a script run as ``python bench/<script>.py``
has ``bench/`` first on ``sys.path``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence

__all__ = ["instructions"]

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def instructions(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``command`` under cachegrind with ``env``; its instructions, all threads counted.

    A failed run (or one that printed no total) stops the bench with the run's last output.
    """
    argv = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    done = subprocess.run([*argv, *command], env=dict(env), capture_output=True, text=True)
    found = _REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return int(found.group(1).replace(",", ""))
