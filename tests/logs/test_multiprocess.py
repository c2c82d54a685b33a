"""Four independent processes append to the shared files and rotate them at once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import split_lines

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from execflow.logs import setup_logging
    from execflow.settings import Settings

    directory, writer, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    settings = Settings(
        log_dir=directory,
        log_max_bytes={"orders_calculated": 20 * 1024, "provider_errors": 20 * 1024},
        # room for every line (4 x 1000 JSON lines of ~280 bytes with the ECS header
        # fields): a line lost to retention would hide one lost to a race
        log_backups={"orders_calculated": 80, "provider_errors": 80},
        log_flush_interval_s=0.01,
    )
    system = setup_logging(settings, "worker_open", instance=writer + 1, bridge=False)
    for seq in range(count):
        system.events.calculation("ORDER_OPEN_CALC", writer=writer, seq=seq, pad="p" * (seq % 90))
        if seq % 4 == 0:
            system.events.error("OPEN:ERROR", writer=writer, seq=seq)
    system.close()
    assert system.counters.dropped == 0, system.counters.snapshot()
    """
)
PROCESSES = 4
COUNT = 1000
MAX = 20 * 1024


def test_four_processes_lose_split_or_duplicate_nothing(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(log_dir), str(w), str(COUNT)])
        for w in range(PROCESSES)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * PROCESSES

    seen: dict[tuple[int, int], int] = {}
    calc_files = sorted(log_dir.glob("orders_calculated.log*"))
    for path in calc_files:
        for line in split_lines(path.read_bytes()):
            obj = json.loads(line)  # a split or interleaved line would not parse
            key = (obj["writer"], obj["seq"])
            seen[key] = seen.get(key, 0) + 1
    expected = {(w, s) for w in range(PROCESSES) for s in range(COUNT)}
    assert set(seen) == expected
    assert set(seen.values()) == {1}
    assert len(calc_files) > 10, "the test must exercise many concurrent rotations"
    longest = max(len(line) + 1 for p in calc_files for line in split_lines(p.read_bytes()))
    for path in calc_files:
        if path.name != "orders_calculated.log":
            assert MAX - longest < path.stat().st_size <= MAX, path

    errors: dict[tuple[str, str], int] = {}
    for path in log_dir.glob("provider_errors.log*"):
        for line in split_lines(path.read_bytes()):
            assert line.startswith("20") and "[OPEN:ERROR]" in line, line
            writer = line.split(" writer=")[1].split()[0]
            seq = line.split(" seq=")[1].split()[0]
            errors[(writer, seq)] = errors.get((writer, seq), 0) + 1
    assert len(errors) == PROCESSES * COUNT // 4
    assert set(errors.values()) == {1}
