"""``execflow demo`` end to end (small): exit 0, clean reconciliation, the ten files filled,
a summary that lists every file written and says which dead letters were injected."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from execflow.apps.demo import MARKER, prepare_run_dir
from execflow.cli.app import app
from execflow.cli.demo import injected_note, render_files
from execflow.errors import ConfigError
from execflow.sim.config import LpConfig

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
    # the summary lists every file the run left, read from the directory (14 logs and more)
    output = result.output
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert len([p for p in files if p.name.endswith(".log")]) >= 13
    assert f"files written: {len(files)} under" in output
    for path in files:
        assert str(path.relative_to(run_dir)) in output, path
    assert "injected on purpose" in output


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


def test_summary_lists_every_file_of_the_run_dir(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "provider"
    logs.mkdir(parents=True)
    names = [f"{name}.log" for name in (*TEN, "intake", "simulator", "db_writer", "supervisor")]
    for name in names:
        (logs / name).write_text("x" * 10)
    (logs / "worker_open.log.1.gz").write_bytes(b"z")
    (tmp_path / "execflow.db").write_bytes(b"d" * 2048)
    console = Console(record=True, width=200)
    render_files(console, tmp_path, logs, tmp_path / "execflow.db")
    text = console.export_text()
    assert "files written: 16 under" in text
    for name in [*names, "worker_open.log.1.gz"]:
        assert f"logs/provider/{name}" in text
    assert "2,048 bytes" in text


def test_injected_faults_are_named_with_their_dead_letter_reasons() -> None:
    note = injected_note(LpConfig(malformed_rate=0.02, double_fill_rate=0.05))
    assert "injected on purpose" in note
    assert "--malformed-rate 2%" in note and "malformed_report" in note
    assert "--double-fill-rate 5%" in note and "needs_review" in note
    assert "another reason is a finding" in note
    only = injected_note(LpConfig(malformed_rate=0.1))
    assert "double" not in only
    assert "any dead letter above is a finding" in injected_note(LpConfig())
