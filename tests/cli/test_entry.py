"""The ways in: ``execflow --version``, ``execflow version`` and ``python -m execflow``."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from execflow import __version__
from execflow.cli.app import app


def test_version_flag_prints_the_version_and_runs_nothing_else() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == __version__
    # eager: a sub-command after it is never reached
    result = CliRunner().invoke(app, ["--version", "logs", "stats", "--dir", "/nonexistent"])
    assert result.exit_code == 0
    assert result.stdout.strip() == __version__


def test_version_command_matches_the_flag() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == __version__


def test_python_dash_m_execflow_is_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "execflow", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == __version__
    usage = subprocess.run(
        [sys.executable, "-m", "execflow", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert usage.returncode == 0, usage.stderr
    assert "logs" in usage.stdout and "run" in usage.stdout
