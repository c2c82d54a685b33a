"""The monitoring bundle: alert rules (promtool), Grafana dashboard, log shippers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from execflow.metrics import Metrics, ReplicationSnapshot
from execflow.settings import require_services

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_METRIC = re.compile(r"\b(?:execflow|process)_[a-z_]+\b")


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed (Debian package prometheus; .ci/apt-deps)"
        if require_services():
            pytest.fail(message + " and EXECFLOW_REQUIRE_SERVICES=1")
        pytest.skip(message)
    return found


def test_alert_rules_pass_promtool_check() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 16 rules found" in result.stdout


def test_the_shipped_prometheus_config_passes_promtool_check() -> None:
    result = subprocess.run(
        [_promtool(), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    found = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_every_rule_has_a_runbook_section() -> None:
    text = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    anchors = _anchors((DEPLOY.parent / "docs" / "runbook.md").read_text())
    # one block per rule, from its "- alert:" line to the next (promtool checks the YAML)
    blocks = re.split(r"^\s+- alert: ", text, flags=re.MULTILINE)[1:]
    assert len(blocks) == 16
    for block in blocks:
        alert = block.split()[0]
        found = re.search(r'^\s+runbook_url: "([^"]*)"$', block, flags=re.MULTILINE)
        assert found is not None, f"{alert} has no runbook_url"
        page, _, anchor = found.group(1).partition("#")
        assert page == "docs/runbook.md", (alert, found.group(1))
        assert anchor == alert.lower() and anchor in anchors, (alert, found.group(1))


def test_alert_rules_unit_tests_pass() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", "alerts_test.yml"],
        cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_and_dashboard_metrics_exist() -> None:
    metrics = Metrics("dashboard-check")
    metrics.watch_replication(ReplicationSnapshot)  # declared with a Redis Cluster store only
    known = metrics.names()
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    dashboard = json.loads((DEPLOY / "grafana" / "execflow-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(dashboard["panels"]) >= 10 and all(exprs)
    used = set(_METRIC.findall(rules)) | {m for e in exprs for m in _METRIC.findall(e)}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = _METRIC.findall(target["expr"])
            assert names, f"panel {panel['title']!r} uses no execflow (or process) metric"
            assert set(names) <= known, (panel["title"], set(names) - known)
    assert used <= known, used - known
    # RED per worker, queue depth, DLQ and LP latency are on the dashboard.
    assert {
        "execflow_worker_outcomes_total",
        "execflow_processing_seconds_bucket",
        "execflow_queue_depth",
        "execflow_dlq_total",
        "execflow_lp_latency_seconds_bucket",
        "execflow_queue_consumers",
        "execflow_stuck_orders",
        "execflow_intake_unsent",
        "execflow_reconcile_mismatches",
        "execflow_reconcile_last_success_timestamp_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    } <= used


def test_log_shippers_read_current_json_files_only() -> None:
    vector = (DEPLOY / "vector" / "vector.toml").read_text()
    filebeat = (DEPLOY / "filebeat" / "filebeat.yml").read_text()
    import tomllib

    config = tomllib.loads(vector)
    source = config["sources"]["execflow_logs"]
    assert source["include"] == ["/var/log/execflow/provider/*.log"]
    assert "parse_json" in config["transforms"]["execflow_parsed"]["source"]
    assert set(config["sinks"]) == {"loki", "elasticsearch"}
    assert "ndjson" in filebeat and "@timestamp" in filebeat
    assert re.search(r"exclude_files: \['\\\.log\\\.\\d\+\(\\\.gz\)\?\$'\]", filebeat)
