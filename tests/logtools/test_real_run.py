"""The log readers on the files of a real pipeline run (the embedded demo), both formats.

Small size limits make the run rotate; one rotated backup is gzipped (as
``EXECFLOW_LOG_GZIP`` does in the background), so every reader goes through current,
rotated and gzipped files written by the pipeline itself.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from execflow.cli.app import app

_SMALL = {"dispatcher": 65536, "worker_open": 16384, "worker_close": 16384, "intake": 32768}
_ORDER_ID = re.compile(rb'order_id(?:=|":")(\d{13})')
_COUNTERS = ("processed", "success", "failure", "skipped", "parked", "dead_lettered")


def _gzip_oldest_backup(logs: Path, name: str) -> Path:
    backups = sorted(logs.glob(f"{name}.log.[0-9]*"), key=lambda p: int(p.name.split(".")[2]))
    assert backups, f"{name}.log never rotated"
    oldest = backups[-1]
    if oldest.suffix == ".gz":
        return oldest
    packed = oldest.with_name(oldest.name + ".gz")
    with oldest.open("rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    oldest.unlink()
    return packed


@pytest.fixture(scope="module", params=["text", "json"])
def real_logs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp(f"run-{request.param}") / "demo"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("EXECFLOW_LOG_MAX_BYTES", json.dumps(_SMALL))
        env.setenv("EXECFLOW_LOG_BACKUPS", json.dumps(dict.fromkeys(_SMALL, 200)))
        args = ["demo", "--orders", "200", "--accounts", "4", "--seed", "3"]
        args += ["--double-fill-rate", "1.0", "--log-format", request.param]
        result = CliRunner().invoke(app, [*args, "--dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    logs = run_dir / "logs" / "provider"
    _gzip_oldest_backup(logs, "worker_open")
    return logs


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, ["logs", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_trace_follows_an_order_from_a_gzipped_backup_through_every_file(real_logs: Path) -> None:
    packed = next(real_logs.glob("worker_open.log.*.gz"))
    with gzip.open(packed, "rb") as handle:
        match = _ORDER_ID.search(handle.read())
    assert match is not None
    order_id = match.group(1).decode()
    traced = json.loads(_invoke("trace", order_id, "--dir", str(real_logs), "--json"))
    files = {line["file"] for line in traced["lines"]}
    assert packed.name in files
    for name in ("intake.log", "dispatcher.log", "orders_calculated.log"):
        assert any(file.startswith(name) for file in files), name
    stamps = [line["ts"] for line in traced["lines"]]
    assert stamps == sorted(stamps)
    about_order = [line for line in traced["lines"] if line["fields"].get("order_id") == order_id]
    assert any(line["tag"] == "OPEN:SUCCESS" for line in about_order)


@pytest.mark.slow
def test_stats_equal_the_components_own_final_stats_lines(real_logs: Path) -> None:
    stats = json.loads(_invoke("stats", "--dir", str(real_logs), "--json"))["components"]
    finals: dict[str, dict[str, int]] = {}
    for path in real_logs.glob("*.log"):
        for raw in path.read_text(encoding="utf-8").splitlines():
            if raw.startswith("{"):
                record = json.loads(raw)
                if record.get("event.action") != "STATS" or record.get("final") is not True:
                    continue
                fields = {k: record[k] for k in ("component", *_COUNTERS)}
            elif "[STATS]" in raw and " final=true" in raw:
                fields = dict(pair.split("=", 1) for pair in raw.split("] ", 1)[1].split(" "))
            else:
                continue
            counts = {k: int(fields[k]) for k in _COUNTERS}
            if fields["component"] == "dispatcher":
                # Ignored messages (heartbeats, acks) are DEBUG lines (DESIGN §3): not in
                # an INFO log, so only the component's own counter knows them.
                ignored = int(record["ignored"] if raw.startswith("{") else fields["ignored"])
                counts["processed"] -= ignored
                counts["skipped"] -= ignored
            finals[str(fields["component"])] = counts
    workers = [name for name in finals if name.startswith(("worker_", "dispatcher"))]
    assert len(workers) == 8
    for component in workers:
        assert {k: stats[component][k] for k in _COUNTERS} == finals[component], component


@pytest.mark.slow
def test_errors_group_every_error_line_of_the_run(real_logs: Path) -> None:
    groups = json.loads(_invoke("errors", "--dir", str(real_logs), "--json"))["groups"]
    error_lines = sum(
        len(path.read_text(encoding="utf-8").splitlines())
        for path in real_logs.glob("provider_errors.log*")
    )
    # The LP filled both legs of positions (--double-fill-rate 1.0): the close worker
    # refused the second fills with ERROR lines (how many depends on the LP's timing).
    assert sum(group["count"] for group in groups) == error_lines
    assert all(group["component"] == "worker_close" for group in groups)


@pytest.mark.slow
def test_report_renders_charts_from_the_run(real_logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    _invoke("report", "--dir", str(real_logs), "--out", str(out))
    html = out.read_text(encoding="utf-8")
    assert html.count("<svg") >= 3
    assert "worker_open" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
