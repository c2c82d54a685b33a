"""Importing any execflow module creates no file and configures no logging."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import importlib, json, logging, os, pkgutil
    import execflow

    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    failed = {}
    for info in pkgutil.walk_packages(execflow.__path__, "execflow."):
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            # A missing optional third-party package is not this test's business.
            if (exc.name or "").startswith("execflow"):
                failed[info.name] = repr(exc)
        except Exception as exc:
            failed[info.name] = repr(exc)
    print(json.dumps({
        "files": sorted(os.listdir(".")),
        "root_untouched": (root.level, list(root.handlers)) == before,
        "root_handlers": len(root.handlers),
        "failed": failed,
        "logs_imported": "execflow.logs.setup" in __import__("sys").modules,
    }))
    """
)


def test_importing_everything_creates_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["logs_imported"]
    assert outcome["files"] == []
    assert outcome["root_untouched"]
    assert outcome["root_handlers"] == 0
    assert not [name for name in outcome["failed"] if name.startswith("execflow.logs")]
    assert list(tmp_path.iterdir()) == []
