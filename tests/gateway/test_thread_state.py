"""The engine's thread keeps one Python thread state between callbacks (``keep_thread_state``).

QuickFIX calls back on threads that are not Python's; the binding makes a thread state for
each callback and destroys it after, unless the thread keeps one. A ``threading.local``
lives in the thread state, so a counter kept in one tells the two apart: with a state per
callback it reads 1 at every message, with a kept state it counts them. Real sessions on
127.0.0.1: the via-FIX demo, every report of which enters Python on the gateway's engine
thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from execflow.apps.demo import DemoOptions, run_demo
from execflow.apps.scenario import ScenarioConfig
from execflow.gateway.service import LpGateway
from execflow.settings import Settings
from execflow.sim.config import LpConfig


async def test_reports_on_the_engine_thread_share_one_thread_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    per_state = threading.local()
    seen: dict[int, list[int]] = {}
    on_received = LpGateway.on_received

    def counted(self: LpGateway, msg_type: str, raw: str) -> None:
        if msg_type == "8":
            per_state.reports = getattr(per_state, "reports", 0) + 1
            seen.setdefault(threading.get_ident(), []).append(per_state.reports)
        on_received(self, msg_type, raw)

    monkeypatch.setattr(LpGateway, "on_received", counted)
    options = DemoOptions(
        run_dir=tmp_path / "run",
        accounts=2,
        scenario=ScenarioConfig(orders=30, settle_timeout_s=60.0),
        lp=LpConfig(ack_rate=0.0, reject_rate=0.0, partial_rate=0.0, duplicate_rate=0.0),
        seed=5,
        via_fix=True,
    )
    outcome = await run_demo(Settings(), options)

    assert outcome.ok
    assert seen, "no report reached the gateway"
    for counts in seen.values():
        # one state from the first report on: the counter goes on, never back to 1
        assert counts == list(range(1, len(counts) + 1)), counts[:20]
    assert sum(len(counts) for counts in seen.values()) >= 30
