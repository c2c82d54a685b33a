"""``bench/fix_bench.py``: the FIX LP's process on a core of its own, the targets line.

A real LP is another host, so by default the bench keeps the last core for the simulated
LP's process and runs the pipeline's on the others (``keep_core_for_lp``). Checked here in
processes of their own (a CPU set is inherited, and the test process keeps its own): the
bench's process gives up exactly its last core, and the LP process it starts runs on that
core alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"

needs_two_cores = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="a core of its own for the LP needs two"
)


def _run(code: str) -> str:
    """``code`` in a fresh interpreter with ``bench/`` first on its path; its stdout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT / "src")])}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_cores_are_spelled_as_taskset_does() -> None:
    out = _run(
        """
        from _lp_processes import cores_text
        print(cores_text([0]), cores_text({0, 1, 2}), cores_text([3, 1]), cores_text([0, 2, 3]))
        """
    )
    assert out.split() == ["0", "0-2", "1,3", "0,2,3"]


@needs_two_cores
def test_the_last_core_is_kept_for_the_lp() -> None:
    cores = sorted(os.sched_getaffinity(0))
    out = _run(
        """
        import os, threading
        from _lp_processes import keep_core_for_lp
        kept = keep_core_for_lp()
        seen = []
        worker = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0))))
        worker.start()
        worker.join()
        print(kept, sorted(os.sched_getaffinity(0)), seen[0])
        """
    )
    kept, own, thread = out.strip().split(" ", 2)
    assert int(kept) == cores[-1]
    assert own.replace(" ", "") == str(cores[:-1]).replace(" ", "")
    # a thread started afterwards (the engine's, the db writer's) inherits the pipeline's
    assert thread.replace(" ", "") == own.replace(" ", "")


@needs_two_cores
def test_the_lp_process_runs_on_its_core_alone() -> None:
    core = sorted(os.sched_getaffinity(0))[-1]
    out = _run(
        f"""
        from pathlib import Path
        from _lp_processes import LpProcess
        with LpProcess.acceptor(core={core}) as lp:
            status = Path(f"/proc/{{lp.pid}}/status").read_text()
            allowed = [l for l in status.splitlines() if l.startswith("Cpus_allowed_list")]
            print(allowed[0].split(":")[1].strip())
        """
    )
    assert out.strip() == str(core)


def test_the_targets_line_says_met_at_the_thresholds_and_not_beyond() -> None:
    out = _run(
        """
        import fix_bench
        print(fix_bench.target_line(0.75, 2.0, 5))
        print(fix_bench.target_line(0.74, 2.01, 1))
        """
    )
    met, missed = out.strip().splitlines()
    assert ">= 0.75x: met (0.75x)" in met and "<= 2 ms: met (+2.00 ms, the median of 5" in met
    assert ">= 0.75x: not met (0.74x)" in missed and "<= 2 ms: not met (+2.01 ms)" in missed
