"""The supervisor restarts children that exit and stops the rest on request."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from execflow.cli.supervisor import ChildSpec, Supervisor, child_specs
from execflow.logs.events import EventLogger


class ScriptSupervisor(Supervisor):
    """Children are small Python scripts instead of execflow commands."""

    def argv(self, spec: ChildSpec) -> list[str]:
        return [sys.executable, "-c", spec.args[0]]


def test_child_specs_cover_the_pipeline() -> None:
    names = [s.name for s in child_specs(2, simulator=True)]
    assert names[0] == "db_writer" and names[-2:] == ["dispatcher", "simulator"]
    assert "worker_open" in names and "worker_open-2" in names
    assert len(names) == 1 + 7 * 2 + 1 + 1
    with_reconciler = child_specs(1, simulator=False, reconcile_every_s=30)
    assert with_reconciler[-1] == ChildSpec("reconciler", ("reconcile", "--every", "30"))


async def test_a_crashing_child_is_restarted_and_a_running_one_is_stopped(
    sim_log: EventLogger, tmp_path: Path
) -> None:
    marker = tmp_path / "runs"
    crash = f"open({str(marker)!r}, 'a').write('x'); raise SystemExit(3)"
    sleeper = "import time; time.sleep(60)"
    exited: list[int] = []
    supervisor = ScriptSupervisor(
        [ChildSpec("crash", (crash,)), ChildSpec("sleeper", (sleeper,))],
        sim_log,
        initial_backoff_s=0.05,
        max_backoff_s=0.1,
        stop_timeout_s=5.0,
        on_exit=exited.append,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    for _ in range(600):
        if supervisor.restarts["crash"] >= 3:
            break
        await asyncio.sleep(0.05)
    sleeper_pid = supervisor.pids()["sleeper"]
    stop.set()
    await asyncio.wait_for(task, 30)
    assert len(marker.read_text()) >= 3
    assert supervisor.restarts["sleeper"] == 0
    # every exit is reported (the metrics forget the child's live gauges), the stop's too
    assert len(exited) >= 4 and sleeper_pid in exited
    assert supervisor.pids() == {}
