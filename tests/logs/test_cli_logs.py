"""``execflow logs check``: exit 0 when all is well, non-zero with a named problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from execflow.cli.app import app

from .conftest import SystemFactory


def _check(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch, *extra_env: tuple[str, str]
) -> tuple[int, str]:
    monkeypatch.setenv("EXECFLOW_LOG_DIR", str(log_dir))
    monkeypatch.setenv("COLUMNS", "200")
    for key, value in extra_env:
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["logs", "check"])
    return result.exit_code, result.output


def test_check_ok_after_setup(
    make_system: SystemFactory, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_system("worker_open").close()
    code, output = _check(log_dir, monkeypatch)
    assert code == 0, output
    assert "worker_open.log" in output and "75.0 MiB" in output
    assert "not created yet" in output  # other components' files


def test_check_fails_when_a_file_is_not_writable(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_dir.mkdir(parents=True)
    (log_dir / "dispatcher.log").mkdir()  # a directory where the file should be
    code, output = _check(log_dir, monkeypatch)
    assert code == 1
    assert "not a regular file" in output


def test_check_fails_on_too_many_backups_and_oversize(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_dir.mkdir(parents=True)
    (log_dir / "worker_open.log").write_bytes(b"x\n" * 3000)
    for number in range(1, 5):
        (log_dir / f"worker_open.log.{number}").write_bytes(b"x\n")
    code, output = _check(
        log_dir,
        monkeypatch,
        ("EXECFLOW_LOG_MAX_BYTES", '{"worker_open": 1024}'),
        ("EXECFLOW_LOG_BACKUPS", '{"worker_open": 2}'),
    )
    assert code == 1
    assert "2 backup(s) beyond the allowed 2" in output
    assert "far above its size limit" in output


def test_check_fails_when_the_directory_is_not_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, output = _check(blocker / "provider", monkeypatch)
    assert code == 1
    assert "not writable" in output
