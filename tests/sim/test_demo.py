"""``execflow demo`` end to end (small): exit 0, clean reconciliation, the ten files filled."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from execflow.apps.demo import MARKER, prepare_run_dir
from execflow.cli.app import app
from execflow.errors import ConfigError

TEN = (
    "dispatcher",
    "worker_open",
    "worker_close",
    "worker_pending",
    "worker_cancel",
    "worker_reject",
    "worker_stoploss",
    "worker_takeprofit",
    "orders_calculated",
    "provider_errors",
)


def first_timestamp(line: str) -> datetime:
    if line.startswith("{"):
        stamp = line.split('"@timestamp":"', 1)[1].split('"', 1)[0]
    else:
        stamp = line.split(" ", 1)[0]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.mark.slow
def test_demo_200_orders_reconciles_and_fills_the_ten_log_files(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    started = datetime.now(UTC).replace(microsecond=0)
    args = ["demo", "--orders", "200", "--accounts", "6", "--dir", str(run_dir)]
    args += ["--double-fill-rate", "1.0", "--seed", "7"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "reconciliation: clean" in result.output
    assert "orders not final" not in result.output
    logs = run_dir / "logs" / "provider"
    assert str(logs) in result.output.replace("\n", "")
    assert (run_dir / "execflow.db").is_file()
    for name in TEN:
        if name == "provider_errors":
            continue
        lines = (logs / f"{name}.log").read_text().splitlines()
        assert lines, f"{name}.log is empty"
        assert first_timestamp(lines[0]) >= started, name
    # Whether this run erred depends on timing (an SL/TP leg the LP double-fills before
    # the close lands), so provider_errors.log is checked as the exact mirror of every
    # ERROR / CRITICAL line the components wrote, not for being non-empty.
    errors = (logs / "provider_errors.log").read_text().splitlines()
    written = [
        line
        for path in sorted(logs.glob("*.log"))
        if path.name != "provider_errors.log"
        for line in path.read_text().splitlines()
        if " ERROR " in line or " CRITICAL " in line
    ]
    assert sorted(errors) == sorted(written)
    assert all(first_timestamp(line) >= started for line in errors)


def test_the_run_dir_is_emptied_only_when_the_demo_made_it(tmp_path: Path) -> None:
    prepare_run_dir(tmp_path / "a")
    (tmp_path / "a" / "old.log").write_text("x")
    prepare_run_dir(tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [MARKER]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "precious.txt").write_text("keep")
    with pytest.raises(ConfigError):
        prepare_run_dir(tmp_path / "b")
    assert (tmp_path / "b" / "precious.txt").read_text() == "keep"
