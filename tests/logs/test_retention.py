"""Cleanup by age and by size cap; dry run changes nothing; current files are never touched."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from execflow.cli.app import app
from execflow.logs.retention import cleanup, plan_cleanup

DAY = 86400.0


def _file(path: Path, size: int, age_days: float) -> Path:
    path.write_bytes(b"x" * size)
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


@pytest.fixture
def populated(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    _file(d / "worker_open.log", 1000, 90)  # current: old but never deleted
    _file(d / "worker_open.log.1", 1000, 1)
    _file(d / "worker_open.log.2.gz", 1000, 10)
    _file(d / "worker_open.log.3.gz", 1000, 40)  # older than 30 days
    _file(d / "dispatcher.log.1", 1000, 45)  # older than 30 days
    _file(d / "dispatcher.log", 1000, 0)
    _file(d / "notes.txt", 10, 100)  # not ours
    return d


def test_age_cleanup_removes_only_old_backups(populated: Path) -> None:
    plan = cleanup(populated, max_age_days=30, max_total_bytes=10**9)
    assert sorted(d.path.name for d in plan.doomed) == ["dispatcher.log.1", "worker_open.log.3.gz"]
    assert {d.reason for d in plan.doomed} == {"age"}
    names = sorted(p.name for p in populated.iterdir())
    assert names == [
        "dispatcher.log",
        "notes.txt",
        "worker_open.log",
        "worker_open.log.1",
        "worker_open.log.2.gz",
    ]


def test_size_cap_removes_oldest_backups_first(populated: Path) -> None:
    plan = cleanup(populated, max_age_days=365, max_total_bytes=3500)
    assert [d.path.name for d in plan.doomed] == [
        "dispatcher.log.1",
        "worker_open.log.3.gz",
        "worker_open.log.2.gz",
    ]
    assert plan.total_after <= 3500
    assert (populated / "worker_open.log").exists()
    assert (populated / "worker_open.log.1").exists()


def test_cap_below_current_files_keeps_current_files(populated: Path) -> None:
    cleanup(populated, max_age_days=365, max_total_bytes=1)
    assert sorted(p.name for p in populated.iterdir()) == [
        "dispatcher.log",
        "notes.txt",
        "worker_open.log",
    ]


def test_dry_run_changes_nothing(populated: Path) -> None:
    before = {p.name: p.stat().st_mtime for p in populated.iterdir()}
    plan = cleanup(populated, max_age_days=30, max_total_bytes=100, dry_run=True)
    assert len(plan.doomed) == 4
    assert {p.name: p.stat().st_mtime for p in populated.iterdir()} == before


def test_cli_cleanup_dry_run_then_real(populated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECFLOW_LOG_DIR", str(populated))
    runner = CliRunner()
    dry = runner.invoke(app, ["logs", "cleanup", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would delete" in dry.output and "dispatcher.log.1" in dry.output
    assert (populated / "dispatcher.log.1").exists()
    real = runner.invoke(app, ["logs", "cleanup"])
    assert real.exit_code == 0, real.output
    assert not (populated / "dispatcher.log.1").exists()
    assert plan_cleanup(populated, 30, 10**9).doomed == []


def test_setup_runs_a_cleanup_at_start(tmp_path: Path) -> None:
    from execflow.logs import setup_logging
    from execflow.settings import Settings

    d = tmp_path / "logs"
    d.mkdir()
    old = _file(d / "dispatcher.log.4", 100, 60)
    system = setup_logging(Settings(log_dir=d), "dispatcher", bridge=False)
    system.close()  # joins the maintenance thread, which cleaned up first thing
    assert not old.exists()
    assert system.maintenance.cleanups >= 1
