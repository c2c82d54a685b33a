"""Size rotation keeps every line, the right number of backups, and gzips in the background."""

from __future__ import annotations

import gzip
from pathlib import Path

from .conftest import SystemFactory, read_all, split_lines

MAX = 4096


def _write(system_factory: SystemFactory, count: int, **settings: object) -> None:
    system = system_factory("worker_cancel", bridge=False, **settings)
    for seq in range(count):
        system.events.info("CANCEL:RECEIVED", seq=seq, order_id=3163458366000 + seq)
    system.close()


def test_rotation_keeps_every_line_and_sizes(make_system: SystemFactory, log_dir: Path) -> None:
    _write(
        make_system,
        600,
        log_max_bytes={"worker_cancel": MAX},
        log_backups={"worker_cancel": 50},
    )
    lines = read_all(log_dir, "worker_cancel.log")
    seqs = [int(line.split(" seq=")[1].split()[0]) for line in lines if "[CANCEL:RECEIVED]" in line]
    assert seqs == list(range(600))
    longest = max(len(line) + 1 for line in lines)
    backups = sorted(log_dir.glob("worker_cancel.log.*"))
    assert len(backups) > 10
    for path in backups:
        size = path.stat().st_size
        assert MAX - longest < size <= MAX, (path, size)


def test_backup_count_is_respected(make_system: SystemFactory, log_dir: Path) -> None:
    _write(make_system, 600, log_max_bytes={"worker_cancel": MAX}, log_backups={"worker_cancel": 3})
    names = sorted(p.name for p in log_dir.glob("worker_cancel.log*"))
    assert names == [
        "worker_cancel.log",
        "worker_cancel.log.1",
        "worker_cancel.log.2",
        "worker_cancel.log.3",
    ]
    # The newest lines survive: the last one written is at the end of the current file.
    assert "seq=599 " in split_lines((log_dir / "worker_cancel.log").read_bytes())[-2] + " "


def test_gzip_backups_hold_every_line(make_system: SystemFactory, log_dir: Path) -> None:
    system = make_system(
        "worker_cancel",
        bridge=False,
        log_max_bytes={"worker_cancel": MAX},
        log_backups={"worker_cancel": 50},
        log_gzip=True,
        log_gzip_level=1,
    )
    for seq in range(400):
        system.events.info("CANCEL:RECEIVED", seq=seq)
    system.flush()
    assert system.maintenance.idle()
    system.close()
    gz = sorted(log_dir.glob("worker_cancel.log.*.gz"))
    assert gz, "rotated backups are compressed"
    assert not [p for p in log_dir.glob("worker_cancel.log.*") if p.suffix != ".gz"]
    assert not list(log_dir.glob(".*.tmp"))
    assert gzip.decompress(gz[0].read_bytes()).endswith(b"\n")
    lines = read_all(log_dir, "worker_cancel.log")
    seqs = [int(line.split(" seq=")[1].split()[0]) for line in lines if "[CANCEL:RECEIVED]" in line]
    assert seqs == list(range(400))


def test_zero_backups_truncates(make_system: SystemFactory, log_dir: Path) -> None:
    _write(make_system, 200, log_max_bytes={"worker_cancel": MAX}, log_backups={"worker_cancel": 0})
    assert sorted(p.name for p in log_dir.glob("worker_cancel.log*")) == ["worker_cancel.log"]
    assert (log_dir / "worker_cancel.log").stat().st_size <= MAX
