"""``execflow bench --instances``: the scale-out table, and the pieces it is counted with."""

from __future__ import annotations

import os
import pstats
import subprocess
import sys
from pathlib import Path

import pytest

from execflow.apps.bench import count_tagged
from execflow.apps.cputime import CpuMeter, CpuSample, is_other_database
from execflow.apps.scaleout import parse_instances

COLUMNS = ("traffic", "N", "reports", "reports/s", "CPU ms", "net", "disp", "worker", "writer")
SERVERS = ("rabbit", "redis", "pg")


def test_instances_are_read_from_comma_lists_and_repeated_options() -> None:
    assert parse_instances(["1,2", "4", " 2 ,"]) == (1, 2, 4)
    for bad in (["0"], ["two"], [","]):
        with pytest.raises(ValueError):
            parse_instances(bad)


def test_only_backends_of_other_databases_are_left_out() -> None:
    mine = "execflow_bench_1a2b3c4d"
    assert is_other_database("postgres: 15/main: postgres test 127.0.0.1(5544) idle", mine)
    assert is_other_database("postgres: postgres other [local] SELECT", mine)
    assert not is_other_database(f"postgres: 15/main: postgres {mine} 127.0.0.1(5544) idle", mine)
    assert not is_other_database("postgres: 15/main: walwriter ", mine)
    assert not is_other_database("postgres: 15/main: checkpointer ", mine)


def test_a_sample_counts_the_cpu_spent_since_the_one_before() -> None:
    before = CpuSample({"a": {(1, 1.0): 2.0, (2, 1.0): 1.0}, "b": {(3, 1.0): 5.0}})
    # pid 2 restarted (new create time): counted from zero; pid 4 is new
    after = CpuSample({"a": {(1, 1.0): 2.5, (2, 9.0): 0.25, (4, 1.0): 1.0}, "b": {(3, 1.0): 5.0}})
    assert after.since(before) == {"a": 1.75, "b": 0.0}


# waits for a line, spends 0.3 s of CPU, says so, waits for the end of its input
_BUSY = """
import sys, time
print("ready", flush=True)
sys.stdin.readline()
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
print("done", flush=True)
sys.stdin.read()
"""


def test_the_meter_counts_the_cpu_a_child_spent_between_two_samples() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _BUSY], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        meter = CpuMeter({"busy": [child.pid]}, {"absent": None})
        first = meter.sample()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "done\n"
        spent = meter.sample().since(first)
        child.stdin.close()
    assert meter.measured == ("busy",)
    assert 0.28 <= spent["busy"] < 1.0, spent


def test_tagged_lines_are_counted_over_every_file(tmp_path: Path) -> None:
    one, two = tmp_path / "worker_open.log", tmp_path / "worker_open-2.log"
    one.write_text("x [OPEN:VERSION_CONFLICT] a\nx [OPEN:SUCCESS] b\nx [OPEN:VERSION_CONFLICT] c\n")
    two.write_text("x [OPEN:VERSION_CONFLICT] d\n")
    tag = ":VERSION_CONFLICT]"
    assert count_tagged([one, two, tmp_path / "worker_open-3.log"], tag) == 3


def _rows(output: str) -> list[list[str]]:
    """The table's header, then its rows, as lists of cells (Rich's heavy and light bars)."""
    return [
        [cell.strip() for cell in line.strip()[1:-1].split(line.strip()[0])]
        for line in output.splitlines()
        if line.strip()[:1] in ("┃", "│")
    ]


@pytest.mark.integration
def test_the_scale_out_table_has_a_row_per_shape_and_instance_count(tmp_path: Path) -> None:
    from tests.services import need_service

    for name in ("rabbitmq", "redis", "postgresql"):
        need_service(name)
    reports = 20
    profiles = tmp_path / "profiles"
    command = [
        sys.executable, "-m", "execflow", "bench", "--instances", "1,2",
        "--distributed-reports", str(reports), "--spread-accounts", "20", "--hot-accounts", "1",
        "--timeout", "120", "--profile-dir", str(profiles),
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=400, env=dict(os.environ), check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "note:" not in done.stdout, done.stdout
    header, *rows = _rows(done.stdout)
    assert header == [*COLUMNS, *SERVERS, "conflicts", "DLQ"]
    assert [(r[0], r[1]) for r in rows] == [
        ("spread 20", "1"),
        ("spread 20", "2"),
        ("hot 1", "1"),
        ("hot 1", "2"),
    ]
    assert [r[2] for r in rows[:2]] == [str(reports)] * 2, rows
    for row in rows:
        figures = dict(zip(header, row, strict=True))
        assert float(figures["reports/s"].replace(",", "")) > 0, row
        parts = [float(figures[c]) for c in ("disp", "worker", "writer", *SERVERS)]
        assert all(p >= 0 for p in parts) and float(figures["CPU ms"]) > 0, row
        assert 0 <= float(figures["net"]) <= float(figures["CPU ms"]), row
        # the total is the sum of its parts (each printed rounded to 0.01)
        assert abs(sum(parts) - float(figures["CPU ms"])) <= 0.01 * len(parts), row
        assert float(figures["worker"]) > 0, row
    # 20 reports on one account at once: concurrent commits on it collide
    assert sum(float(r[-2]) for r in rows[2:]) > 0, rows
    # every report applied or dead-lettered (the hot shape may lose some to contention)
    assert all(int(r[2]) + int(r[-1]) == reports for r in rows), rows
    _assert_profiled(profiles)


def _assert_profiled(profiles: Path) -> None:
    """``--profile-dir``: a profile per pass, process and instance, each of its own work."""
    expected = {
        f"{label}-{process}-{i}.prof"
        for label, count in (("spread1", 1), ("spread2", 2), ("hot1", 1), ("hot2", 2))
        for process in ("db_writer", "worker_open", "dispatcher")
        for i in range(1, count + 1)
    }
    assert {p.name for p in profiles.iterdir()} == expected
    called = {
        (Path(file).name, function)
        for file, _line, function in pstats.Stats(
            str(profiles / "spread1-worker_open-1.prof")
        ).stats  # type: ignore[attr-defined]
    }
    assert ("workers.py", "handle") in called, sorted(called)[:20]


@pytest.mark.integration
async def test_a_pass_clean_up_removes_the_delay_queues_its_processes_declared(
    tmp_path: Path,
) -> None:
    """A pass's processes declare ``{queue}.delay.{ms}`` when they retry a report later;
    they are gone when the bench cleans up, so it deletes every delay queue the pass's
    queues can have (a hot pass left ``...worker.open.delay.200`` on the shared broker)."""
    import aio_pika

    from execflow.apps.bench import cleanup_pass
    from execflow.backends.bus import QueueNames
    from execflow.logs.setup import setup_logging
    from execflow.settings import Settings
    from tests.backends.conftest import make_rabbit_bus, unique
    from tests.services import AMQP_URL, REDIS_URL, need_service

    need_service("rabbitmq")
    need_service("redis")
    prefix = unique("efclean")
    names = QueueNames(prefix)
    bus = await make_rabbit_bus(names)
    try:
        declared = [
            await bus.declare_delay_queue(names.worker("open"), 0.2),
            await bus.declare_delay_queue(names.reports, 30.0),
        ]
    finally:
        await bus.close()
    assert declared == [f"{prefix}.worker.open.delay.200", f"{prefix}.reports.delay.30000"]
    settings = Settings(
        queue_prefix=prefix,
        state_url=f"{REDIS_URL}?key_prefix={prefix}",
        log_dir=tmp_path / "logs",
    )
    logs = setup_logging(settings, "simulator", bridge=False)
    try:
        await cleanup_pass(AMQP_URL, settings, logs.logger("simulator"))
    finally:
        logs.close()
    connection = await aio_pika.connect(AMQP_URL)
    try:
        for name in declared:
            channel = await connection.channel()
            with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
                await channel.declare_queue(name, passive=True)
    finally:
        await connection.close()
