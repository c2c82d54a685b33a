"""An operator's mistake is one line on stderr and exit code 2, never a traceback.

An unknown ``--component``, a config file that is not TOML, a setting that is not JSON,
an ``--out`` that cannot be written, and ``run all`` on in-memory backends; through the
Typer app, and two of them as real processes (what an operator sees, no test runner
between).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from execflow.cli.app import app
from execflow.logs.catalog import CATALOG
from execflow.settings import environment_with

ENTRY = "from execflow.cli.app import main; main()"


@dataclass(frozen=True)
class Done:
    """Exit code and output of one command."""

    returncode: int
    stdout: str
    stderr: str


def _clean_env(**extra: str) -> dict[str, str | None]:
    """No ``EXECFLOW_*`` setting from the caller's environment, plus ``extra``."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("EXECFLOW_")}
    return {**unset, **extra}


def _execflow(*args: str, env: dict[str, str | None] | None = None) -> Done:
    result = CliRunner().invoke(app, list(args), env=env)
    return Done(result.exit_code, result.stdout, result.stderr)


def _process(*args: str, env: dict[str, str | None]) -> Done:
    full = {k: v for k, v in {**environment_with(), **env}.items() if v is not None}
    done = subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=full,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def _one_line(done: Done, code: int = 2) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("execflow: ")
    return lines[0]


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "logs"
    directory.mkdir()
    (directory / "worker_open.log").write_text(
        "2026-11-29T12:47:00.123456Z INFO provider.worker.open [OPEN:SUCCESS] order_id=1 "
        "processing_time_ms=2.5\n"
    )
    return directory


def test_unknown_component_names_the_known_ones(log_dir: Path) -> None:
    for command in ("stats", "errors", "report", "tail"):
        extra = ("--max-seconds", "0") if command == "tail" else ()
        done = _execflow("logs", command, "--component", "nosuch", "--dir", str(log_dir), *extra)
        line = _one_line(done)
        assert "'nosuch'" in line
        for known in ("dispatcher", "worker_open", "db_writer"):
            assert known in line
        assert "provider_errors" not in line  # a shared file, not a component
    # a worker by its kind and by its full name are both fine
    for name in ("open", "worker_open"):
        done = _execflow("logs", "stats", "--json", "--component", name, "--dir", str(log_dir))
        assert done.returncode == 0, done.stderr
        assert list(json.loads(done.stdout)["components"]) == ["worker_open"]


def test_missing_log_directory_is_one_line(tmp_path: Path) -> None:
    line = _one_line(_execflow("logs", "stats", "--dir", str(tmp_path / "nowhere")))
    assert "no log directory" in line and "nowhere" in line


def test_config_file_that_is_not_toml(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('log_level = "INFO"\nbroker_url = \n')
    # as a real process: what an operator sees, with no test runner in between
    line = _one_line(_process("--config", str(config), "config", env=_clean_env()))
    assert "configuration error" in line
    assert "not valid TOML" in line and str(config) in line


def test_setting_that_is_not_json() -> None:
    env = _clean_env(EXECFLOW_LOG_MAX_BYTES='{"dispatcher": 5')
    line = _one_line(_execflow("config", env=env))
    assert "configuration error" in line
    assert "log_max_bytes" in line and "EXECFLOW_LOG_MAX_BYTES" in line
    assert "not valid JSON" in line


def test_unwritable_out_is_a_directory(log_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "reports"
    target.mkdir()
    line = _one_line(_execflow("logs", "report", "--dir", str(log_dir), "--out", str(target)))
    assert "--out" in line and "cannot write" in line and str(target) in line
    assert list(target.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_unwritable_out_missing_directory(log_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "dir" / "report.html"
    line = _one_line(_execflow("logs", "report", "--dir", str(log_dir), "--out", str(out)))
    assert "cannot write" in line and str(out) in line and "--out" in line
    assert not out.parent.exists()


def test_run_all_refuses_in_memory_backends(tmp_path: Path) -> None:
    env = _clean_env(EXECFLOW_LOG_DIR=str(tmp_path / "logs"))
    line = _one_line(_process("run", "all", env=env))
    assert "run all refused" in line
    assert "broker_url and state_url" in line
    assert "could not pass a message to each other" in line
    assert "EXECFLOW_BROKER_URL" in line and "EXECFLOW_STATE_URL" in line
    # nothing was started: no supervisor log, no child's log
    assert not (tmp_path / "logs").exists()
    # one in-memory backend is enough to refuse, and only that one is named
    env["EXECFLOW_BROKER_URL"] = "amqp://guest:guest@127.0.0.1:1/"
    line = _one_line(_execflow("run", "all", env=env))
    assert "state_url = memory://" in line and "broker_url" not in line


def test_known_components_cover_the_catalog() -> None:
    done = _execflow("logs", "stats", "--component", "nosuch", "--dir", "/")
    line = _one_line(done)
    for name, spec in CATALOG.items():
        assert (name in line) is (not spec.shared)


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep")
    line = _one_line(_execflow("demo", "--orders", "1", "--dir", str(tmp_path)))
    assert "configuration error" in line and "was not made by execflow demo" in line
    assert (tmp_path / "precious.txt").read_text() == "keep"
