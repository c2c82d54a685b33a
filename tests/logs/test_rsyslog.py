"""A real shipper over execflow's JSON logs: rsyslogd with ``deploy/rsyslog/execflow.conf``.

rsyslogd runs on its own config (the shipped file, its log directory moved to a
temporary one and its forward to a collector swapped for an ``omfile``), its own pid file
and work directory: no system daemon is touched. execflow's real writer, in another
process, writes JSON lines through several rotations (with gzipped backups and one line
longer than rsyslog's default 8 KiB); every line written must arrive exactly once, whole.
The files rotate every 0.3 s or so: imfile misses a file that is created and renamed
away before it notices it (measured here: files living about 0.1 s lost one in three,
0.2 s and more none), a limit docs/logs.md states.

Skipped when rsyslogd is not installed (Debian package ``rsyslog``, in ``.ci/apt-deps``),
failed instead when ``EXECFLOW_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from execflow.logtools.files import discover, iter_lines
from execflow.settings import require_services

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "deploy" / "rsyslog" / "execflow.conf"
SHIPPED_DIR = "/var/log/execflow/provider"
ROTATE_BYTES = 128 * 1024
LINES = 2600

WRITER = """
import sys, time
from pathlib import Path
from execflow.logs import setup_logging
from execflow.settings import load_settings

directory, count = Path(sys.argv[1]), int(sys.argv[2])
sizes = dict.fromkeys(("worker_open", "provider_errors", "orders_calculated"), {rotate})
settings = load_settings(
    log_dir=directory, log_format="json", log_max_bytes=sizes,
    log_backups=dict.fromkeys(sizes, 100), log_gzip=True, log_flush_interval_s=0.02,
)
with setup_logging(settings, "worker_open", bridge=False) as system:
    log = system.logger("open")
    for seq in range(count):
        log.success("OPEN:SUCCESS", processing_time_ms=1.5, order_id=str(seq),
                    user="demo:3", symbol="EURUSD", seq=seq, pad="x" * (seq % 97))
        if seq == count // 2:
            try:
                raise KeyError("no rate " + "y" * 12000)
            except KeyError as exc:
                log.failure("OPEN:ERROR", exc=exc, order_id=str(seq))
        if seq % 50 == 49:
            time.sleep(0.04)  # about 0.3 s per rotation: busy, but see docs/logs.md
""".replace("{rotate}", str(ROTATE_BYTES))


def _rsyslogd() -> str:
    found = shutil.which("rsyslogd") or next(
        (p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if Path(p).exists()), None
    )
    if found is None:
        message = "rsyslogd is not installed (Debian package rsyslog; .ci/apt-deps installs it)"
        if require_services():
            pytest.fail(message + " and EXECFLOW_REQUIRE_SERVICES=1")
        pytest.skip(message)
    return found


def test_shipped_config_reads_the_shared_log_directory() -> None:
    text = SHIPPED.read_text()
    assert f'File="{SHIPPED_DIR}/*.log"' in text
    assert 'module(load="imfile" mode="inotify")' in text
    assert re.search(r'action\(type="omfwd".*?template="execflow_json_line"', text, re.S)


def _test_config(root: Path, log_dir: Path, out: Path) -> Path:
    """The shipped file with its directory moved and its forward written to ``out``."""
    text = SHIPPED.read_text().replace(SHIPPED_DIR, str(log_dir))
    text, swapped = re.subn(
        r'action\(type="omfwd".*?\)\n',
        f'action(type="omfile" file="{out}" template="execflow_json_line")\n',
        text,
        flags=re.S,
    )
    assert swapped == 1
    work = root / "work"
    work.mkdir()
    config = root / "rsyslog.conf"
    config.write_text(f'global(workDirectory="{work}")\n' + text)
    return config


def _lines_written(log_dir: Path) -> Counter[bytes]:
    return Counter(line for f in discover(log_dir) for line in iter_lines(f) if line)


def _delivered(out: Path) -> list[bytes]:
    if not out.exists():
        return []
    return [line for line in out.read_bytes().split(b"\n") if line]


@pytest.mark.slow
def test_rsyslog_delivers_every_line_through_rotations(tmp_path: Path) -> None:
    binary = _rsyslogd()
    log_dir, out, pid = tmp_path / "logs", tmp_path / "shipped.jsonl", tmp_path / "rsyslogd.pid"
    log_dir.mkdir()
    config = _test_config(tmp_path, log_dir, out)
    check = subprocess.run(
        [binary, "-N1", "-f", str(config)], capture_output=True, text=True, timeout=30, check=False
    )
    assert check.returncode == 0, check.stderr
    daemon = subprocess.Popen(
        [binary, "-n", "-f", str(config), "-i", str(pid)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while not pid.exists() and daemon.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.poll() is None and pid.exists(), "rsyslogd did not start"
        writer = subprocess.run(
            [sys.executable, "-c", WRITER, str(log_dir), str(LINES)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert writer.returncode == 0, writer.stderr[-2000:]
        written = _lines_written(log_dir)
        deadline = time.monotonic() + 20
        while len(_delivered(out)) < written.total() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        output = daemon.communicate(timeout=30)[0]
    rotated = [f for f in discover(log_dir) if f.generation > 0]
    assert len([f for f in rotated if f.stem == "worker_open"]) >= 5, "too few rotations"
    assert any(f.gzipped for f in rotated)
    delivered = _delivered(out)
    # every line exactly once, byte for byte, each one whole JSON
    assert Counter(delivered) == written, (written.total(), len(delivered), output[-2000:])
    seqs = sorted(orjson.loads(line)["seq"] for line in delivered if b'"seq":' in line)
    assert seqs == list(range(LINES))
    long_line = next(line for line in delivered if b'"OPEN:ERROR"' in line)
    assert len(long_line) > 12000
    assert orjson.loads(long_line)["error.message"].startswith("'no rate yyy")
