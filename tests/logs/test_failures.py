"""Real faults (full disk, unwritable file, deleted directory) never reach the caller."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from execflow.logs.failures import FailureReporter, WriterCounters

from .conftest import SystemFactory, read_all, split_lines

FULL_DISK_SCRIPT = textwrap.dedent(
    """
    import json, resource, signal, sys
    from pathlib import Path
    from execflow.logs import setup_logging
    from execflow.settings import Settings

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    system = setup_logging(Settings(log_dir=Path(sys.argv[1])), "worker_open", bridge=False)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, hard))
    raised = None
    try:
        for seq in range(2000):
            system.events.info("OPEN:RECEIVED", seq=seq, pad="x" * 40)
        system.flush()
        for seq in range(2000):
            system.events.info("OPEN:RECEIVED", seq=seq, pad="y" * 40)
        system.flush()
    except BaseException as exc:
        raised = repr(exc)
    failures = system.counters.write_failures
    dropped = system.counters.dropped
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    system.events.info("OPEN:RESUMED", after="fault")
    system.close()
    print(json.dumps({"raised": raised, "failures": failures, "dropped": dropped}))
    """
)


def test_full_disk_is_counted_reported_once_and_recovers(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK_SCRIPT, str(log_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    outcome = json.loads(result.stdout)
    assert outcome["raised"] is None
    assert outcome["failures"] >= 2 and outcome["dropped"] > 0
    reports = [line for line in result.stderr.splitlines() if "cannot write" in line]
    assert len(reports) == 1, result.stderr  # rate-limited: once a minute
    assert "File too large" in reports[0]
    lines = split_lines((log_dir / "worker_open.log").read_bytes())
    assert lines[-2].endswith("[OPEN:RESUMED] after=fault")
    # Every line that made it is whole: the torn last line before the fault stays on its own.
    assert all(line.startswith("20") for line in lines if "seq=" in line or "RESUMED" in line)
    assert "writing to" in result.stderr and "again" in result.stderr


def test_file_replaced_by_a_directory(make_system: SystemFactory, log_dir: Path) -> None:
    stderr = io.StringIO()
    system = make_system("worker_pending", stderr=stderr)
    log = system.events
    log.info("PENDING:RECEIVED", phase="before")
    system.flush()
    path = log_dir / "worker_pending.log"
    path.unlink()
    path.mkdir()  # even root cannot open a directory for writing
    log.info("PENDING:RECEIVED", phase="during")
    log.info("PENDING:RECEIVED", phase="during")
    system.flush()
    assert system.counters.write_failures >= 1
    assert system.counters.dropped >= 2
    assert "cannot write" in stderr.getvalue() and "IsADirectoryError" in stderr.getvalue()
    path.rmdir()
    log.info("PENDING:RECEIVED", phase="after")
    system.flush()
    assert "phase=after" in path.read_text()
    assert "again" in stderr.getvalue()


def test_deleted_directory_is_recreated(make_system: SystemFactory, log_dir: Path) -> None:
    system = make_system("worker_stoploss", stderr=io.StringIO())
    log = system.events
    log.info("STOPLOSS:RECEIVED", n=1)
    log.calculation("ORDER_CLOSE_CALC", n=1)
    system.flush()
    shutil.rmtree(log_dir)
    for n in range(2, 50):
        log.info("STOPLOSS:RECEIVED", n=n)
    log.error("STOPLOSS:ERROR", n=99)
    log.calculation("ORDER_CLOSE_CALC", n=2)
    system.flush()
    lines = read_all(log_dir, "worker_stoploss.log")
    assert [line.split(" n=")[1] for line in lines if "RECEIVED" in line] == [
        str(n) for n in range(2, 50)
    ]
    assert "n=99" in (log_dir / "provider_errors.log").read_text()
    assert '"n":2' in (log_dir / "orders_calculated.log").read_text()


def test_reports_are_rate_limited_to_one_a_minute() -> None:
    now = [0.0]
    out = io.StringIO()
    counters = WriterCounters()
    reporter = FailureReporter(counters, stream=out, monotonic=lambda: now[0])
    for _ in range(5):
        reporter.failed("/x.log", OSError(28, "No space left on device"), lines_lost=2)
        now[0] += 10
    assert out.getvalue().count("cannot write") == 1
    now[0] = 61
    reporter.failed("/x.log", OSError(28, "No space left on device"))
    assert out.getvalue().count("cannot write") == 2
    assert "4 similar failures not shown" in out.getvalue()
    assert counters.write_failures == 6 and counters.dropped == 10
    reporter.recovered("/x.log")
    reporter.recovered("/x.log")
    assert out.getvalue().count("again") == 1
