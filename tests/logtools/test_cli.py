"""The ``execflow logs`` reading commands, end to end through the Typer app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from execflow.cli.app import app
from tests.logtools.pipeline_logs import Written

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["logs", *args])
    return result.exit_code, result.stdout


def test_trace_text_lines_are_prefixed_by_file(mixed_logs: Written) -> None:
    order_id = mixed_logs.orders[-1]  # written by instance 2, JSON
    code, out = _run("trace", order_id, "--dir", str(mixed_logs.directory))
    assert code == 0
    lines = out.splitlines()
    assert len(lines) >= 6
    assert all(" | 20" in line for line in lines)
    assert any(line.startswith("worker_close-2.log") for line in lines)
    assert any(line.startswith("orders_calculated.log") for line in lines)
    assert all(f"order_id={order_id}" in line or "trace_id=tr-" in line for line in lines)


def test_trace_json_and_missing_order(text_logs: Written) -> None:
    order_id = text_logs.orders[0]
    code, out = _run("trace", order_id, "--json", "--dir", str(text_logs.directory))
    assert code == 0
    doc = json.loads(out)
    assert doc["order_id"] == order_id
    assert doc["trace_ids"] == sorted(text_logs.trace_ids[order_id])
    assert {line["file"] for line in doc["lines"]} >= {"orders_calculated.log"} or doc["lines"]
    assert [line["ts"] for line in doc["lines"]] == sorted(line["ts"] for line in doc["lines"])
    code, _ = _run("trace", "999999999", "--dir", str(text_logs.directory))
    assert code == 1


def test_stats_json_and_table(mixed_logs: Written) -> None:
    code, out = _run("stats", "--json", "--dir", str(mixed_logs.directory))
    assert code == 0
    doc = json.loads(out)
    comps = doc["components"]
    assert set(comps) == {"dispatcher", "worker_open", "worker_close"}
    assert comps["dispatcher"]["dlq_by_reason"] == {"unknown_lifecycle_id": 6}
    code, out = _run(
        "stats", "--component", "open", "--since", "2000-01-01T00:00:00",
        "--dir", str(mixed_logs.directory),
    )  # fmt: skip
    assert code == 0
    assert "worker_open" in out and "worker_close" not in out
    assert "precondition_timeout" in out
    code, _ = _run("stats", "--since", "yesterday", "--dir", str(mixed_logs.directory))
    assert code == 2


def test_errors_json_and_text(logs: Written) -> None:
    code, out = _run("errors", "--json", "--dir", str(logs.directory))
    assert code == 0
    groups = json.loads(out)["groups"]
    assert sum(g["count"] for g in groups) == logs.failures
    code, out = _run("errors", "--component", "worker_close", "--dir", str(logs.directory))
    assert code == 0
    assert "KeyError in worker_close" in out
    assert "Traceback (most recent call last):\n" in out


def test_report_writes_html(text_logs: Written, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    code, _ = _run("report", "--out", str(out), "--dir", str(text_logs.directory))
    assert code == 0
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_tail_bounded_with_filters(text_logs: Written) -> None:
    code, out = _run(
        "tail", "--lines", "5", "--level", "warning", "--component", "open",
        "--max-seconds", "0", "--dir", str(text_logs.directory),
    )  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    current = (text_logs.directory / "worker_open.log").read_text().splitlines()
    expected = [x for x in current if " WARNING " in x or " ERROR " in x][-5:]
    assert len(lines) == len(expected) >= 1
    assert [line.split(" | ", 1)[1][:27] for line in lines] == [x[:27] for x in expected]
    assert all(line.startswith("worker_open.log | ") for line in lines)
    assert all(" WARNING " in line or " ERROR " in line for line in lines)


def test_missing_directory_exits_2(tmp_path: Path) -> None:
    code, _ = _run("stats", "--dir", str(tmp_path / "nope"))
    assert code == 2


def test_tail_follows_in_a_real_process(tmp_path: Path) -> None:
    """``execflow logs tail`` as ops run it: a line appended while it runs is printed."""
    log = tmp_path / "worker_open.log"
    log.write_text("2026-11-29T12:00:00.000001Z INFO provider.worker.open [OPEN:SUCCESS] n=1\n")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("execflow")), "logs", "tail", "--dir", str(tmp_path),
         "--max-seconds", "30", "--poll-s", "0.05", "--event", "closed"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with log.open("a") as out:
            out.write("2026-11-29T12:00:01.000001Z INFO provider.worker.open [OPEN:CLOSED] n=2\n")
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "[OPEN:CLOSED] n=2" in line
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
