"""The 2-minute soak (``bench/soak.py --minutes 2``): messy LP, RSS flat, reconciled.

It disrupts nothing, so it runs on the default servers (unique names, a fresh database,
all removed). Its output goes to ``$EXECFLOW_FAULT_RECORD/last_soak.txt`` only on request.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import record_dir

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
async def test_two_minute_soak_reconciles_with_flat_rss_and_stats_lines() -> None:
    from tests.services import need_service

    for name in ("rabbitmq", "redis", "postgresql"):
        need_service(name)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "2", "--every", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=540, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    directory = record_dir()
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "last_soak.txt").write_text(output)
    assert done.returncode == 0, output[-4000:]
    assert "reconciliation: clean" in output
    assert "lost=0 applied_twice=0" in output
    assert "soak: PASS" in output
    assert "STATS lines:" in output and "(ok," in output
