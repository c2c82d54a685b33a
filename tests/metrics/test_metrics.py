"""Metrics over HTTP: names, labels, values, health, bind address."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from execflow.cli.supervisor import child_environment
from execflow.errors import ConfigError
from execflow.metrics import OUTCOMES, LogSnapshot, Metrics, MetricsServer, ReplicationSnapshot
from execflow.metrics.processes import component_of
from execflow.settings import PROMETHEUS_MULTIPROC_DIR


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served() -> Iterator[tuple[Metrics, MetricsServer, _Clock]]:
    clock = _Clock()
    metrics = Metrics("dispatcher", clock=clock)
    server = MetricsServer(metrics, port=0).start()
    try:
        yield metrics, server, clock
    finally:
        server.stop()


def _get(server: MetricsServer, path: str) -> tuple[int, bytes]:
    url = f"http://{server.host}:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_scrape_names_labels_values(served: tuple[Metrics, MetricsServer, _Clock]) -> None:
    metrics, server, clock = served
    metrics.report_received()
    metrics.report_received()
    metrics.report_routed("worker_open")
    metrics.dead_lettered("unknown_lifecycle_id")
    metrics.worker_outcome("worker_open", "success", seconds=0.003)
    metrics.worker_outcome("worker_open", "parked")
    metrics.observe_processing("dispatcher", 0.0004)
    metrics.retried("worker_close")
    metrics.set_intake_unsent(2)
    metrics.reconciled(3)
    metrics.reconcile_failed()
    metrics.set_queue_depth("worker_open", 7, consumers=2)
    metrics.observe_lp_latency(0.04)
    metrics.log_write_failed()
    metrics.watch_logs(lambda: LogSnapshot({"dispatcher.log": 42}, write_failures=2, dropped=1))
    clock.now += 12.5
    status, body = _get(server, "/metrics")
    assert status == 200
    s = _samples(body)
    assert s[("execflow_reports_received_total", ())] == 2
    assert s[("execflow_reports_routed_total", (("queue", "worker_open"),))] == 1
    assert s[("execflow_dlq_total", (("reason", "unknown_lifecycle_id"),))] == 1
    key = ("execflow_worker_outcomes_total", (("component", "worker_open"), ("outcome", "success")))
    assert s[key] == 1
    assert s[("execflow_parked_total", (("component", "worker_open"),))] == 1
    assert s[("execflow_processing_seconds_count", (("component", "worker_open"),))] == 1
    bucket = (("component", "worker_open"), ("le", "0.005"))
    assert s[("execflow_processing_seconds_bucket", bucket)] == 1
    assert s[("execflow_processing_seconds_count", (("component", "dispatcher"),))] == 1
    assert s[("execflow_retries_total", (("component", "worker_close"),))] == 1
    assert s[("execflow_intake_unsent", ())] == 2
    assert s[("execflow_reconcile_mismatches", ())] == 3
    assert s[("execflow_reconcile_last_success_timestamp_seconds", ())] == 1000.0
    assert s[("execflow_reconcile_failures_total", ())] == 1
    # one process, one endpoint: its own process_* figures
    assert s[("process_resident_memory_bytes", ())] > 0
    assert s[("process_cpu_seconds_total", ())] >= 0
    assert s[("execflow_queue_depth", (("queue", "worker_open"),))] == 7
    assert s[("execflow_queue_consumers", (("queue", "worker_open"),))] == 2
    assert s[("execflow_lp_latency_seconds_count", ())] == 1
    assert s[("execflow_last_report_timestamp_seconds", ())] == 1000.0
    assert s[("execflow_last_report_age_seconds", ())] == 12.5
    assert s[("execflow_log_lines_total", (("file", "dispatcher.log"),))] == 42
    assert s[("execflow_log_write_failures_total", ())] == 3
    assert s[("execflow_log_dropped_total", ())] == 1
    assert s[("execflow_component_up", (("component", "dispatcher"),))] == 1
    # Counters from a cumulative snapshot do not double on the next scrape.
    assert (
        _samples(_get(server, "/metrics")[1])[
            ("execflow_log_lines_total", (("file", "dispatcher.log"),))
        ]
        == 42
    )


UNDER_REPLICATED = "execflow_state_under_replicated_writes_total"
MASTER_REPLICAS = "execflow_state_master_replicas"


def test_a_replicated_stores_counts_in_the_exposition() -> None:
    metrics = Metrics("worker_open")
    seen = ReplicationSnapshot()
    metrics.watch_replication(lambda: seen)
    # declared when watched: the counter at zero before the first short write
    s = _samples(metrics.exposition())
    assert s[(UNDER_REPLICATED, ())] == 0
    assert not [key for key in s if key[0] == MASTER_REPLICAS]
    seen = ReplicationSnapshot(3, {"10.0.0.1:7001": 0, "10.0.0.2:7002": 1})
    s = _samples(metrics.exposition())
    assert s[(UNDER_REPLICATED, ())] == 3
    assert s[(MASTER_REPLICAS, (("node", "10.0.0.1:7001"),))] == 0
    assert s[(MASTER_REPLICAS, (("node", "10.0.0.2:7002"),))] == 1
    # cumulative: not doubled on the next scrape; a replica back is the gauge's new value
    seen = ReplicationSnapshot(4, {"10.0.0.1:7001": 1, "10.0.0.2:7002": 1})
    s = _samples(metrics.exposition())
    assert s[(UNDER_REPLICATED, ())] == 4
    assert s[(MASTER_REPLICAS, (("node", "10.0.0.1:7001"),))] == 1
    # another store watched (services opened again): its counts add to what was exported
    metrics.watch_replication(lambda: ReplicationSnapshot(2, {}))
    assert _samples(metrics.exposition())[(UNDER_REPLICATED, ())] == 6


def test_a_process_whose_store_does_not_replicate_exports_no_replication() -> None:
    metrics = Metrics("worker_open")
    assert {UNDER_REPLICATED, MASTER_REPLICAS}.isdisjoint(metrics.names())
    names = {name for name, _ in _samples(metrics.exposition())}
    assert not {n for n in names if n.startswith("execflow_state_")}


def test_no_id_like_labels(served: tuple[Metrics, MetricsServer, _Clock]) -> None:
    metrics, server, _ = served
    metrics.worker_outcome("worker_close", "failure")
    labels = {name for (_, pairs) in _samples(_get(server, "/metrics")[1]) for name, _ in pairs}
    assert labels <= {"queue", "reason", "outcome", "component", "file", "le", "version"} | {
        "implementation",
        "major",
        "minor",
        "patchlevel",  # python_info
    }


def test_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="outcome"):
        Metrics("worker_open").worker_outcome("worker_open", "exploded")


def test_health_200_then_503(served: tuple[Metrics, MetricsServer, _Clock]) -> None:
    metrics, server, clock = served
    status, body = _get(server, "/healthz")
    assert status == 200
    doc = json.loads(body)
    assert doc["status"] == "ok" and doc["component"] == "dispatcher"
    assert doc["last_report_age_s"] is None
    clock.now += 3
    metrics.report_received()
    broken = {"bus": "connection lost"}
    metrics.add_health_check("bus", lambda: broken.get("bus"))
    status, body = _get(server, "/healthz")
    doc = json.loads(body)
    assert status == 503
    assert doc["status"] == "failing" and doc["failures"] == {"bus": "connection lost"}
    assert doc["uptime_s"] == 3.0 and doc["last_report_age_s"] == 0.0
    broken.clear()
    assert _get(server, "/healthz")[0] == 200
    assert _get(server, "/nope")[0] == 404


def test_binds_loopback_by_default() -> None:
    server = MetricsServer(Metrics("worker_close")).start()
    try:
        assert server.host == "127.0.0.1"
        assert server.port > 0
        assert _get(server, "/healthz")[0] == 200
    finally:
        server.stop()


def _child(directory: str, worker: str, replicas: int) -> None:
    metrics = Metrics(f"worker_{worker}", multiprocess_dir=Path(directory))
    metrics.worker_outcome(f"worker_{worker}", "success", seconds=0.01)
    metrics.report_received()
    metrics.watch_replication(lambda: ReplicationSnapshot(2, {"10.0.0.1:7001": replicas}))
    metrics.refresh()


def _aggregate(directory: str, queue: multiprocessing.Queue[bytes]) -> None:
    metrics = Metrics("supervisor", aggregate_dir=Path(directory))
    queue.put(metrics.exposition())


def test_multiprocess_mode_aggregates_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Multi-process mode changes prometheus_client globals: run it in fresh processes,
    # each child with the environment `run all` gives its children.
    ctx = multiprocessing.get_context("spawn")
    env = child_environment(tmp_path)
    assert env is not None
    monkeypatch.setenv(PROMETHEUS_MULTIPROC_DIR, env[PROMETHEUS_MULTIPROC_DIR])
    # one after the other: each learns the master's replicas later than the one before
    for worker, replicas in (("open", 0), ("close", 2), ("open", 1)):
        proc = ctx.Process(target=_child, args=(str(tmp_path), worker, replicas))
        proc.start()
        proc.join(60)
        assert proc.exitcode == 0
    # the supervisor's own environment names no directory: it only aggregates
    monkeypatch.delenv(PROMETHEUS_MULTIPROC_DIR)
    queue: multiprocessing.Queue[bytes] = ctx.Queue()
    proc = ctx.Process(target=_aggregate, args=(str(tmp_path), queue))
    proc.start()
    body = queue.get(timeout=60)
    proc.join(60)
    s = _samples(body)
    assert s[("execflow_reports_received_total", ())] == 3
    key = ("execflow_worker_outcomes_total", (("component", "worker_open"), ("outcome", "success")))
    assert s[key] == 2
    assert s[("execflow_processing_seconds_count", (("component", "worker_close"),))] == 1
    assert s[("execflow_component_up", (("component", "worker_open"),))] == 2
    # every process's short writes; the replicas the latest to ask was told
    assert s[(UNDER_REPLICATED, ())] == 6
    assert s[(MASTER_REPLICAS, (("node", "10.0.0.1:7001"),))] == 1


def test_declared_components_exist_at_zero_before_any_traffic() -> None:
    metrics = Metrics("worker_close")
    metrics.declare_component("worker_close", worker=True)
    metrics.declare_component("dispatcher", worker=False)
    s = _samples(metrics.exposition())
    for outcome in OUTCOMES:
        key = (("component", "worker_close"), ("outcome", outcome))
        assert s[("execflow_worker_outcomes_total", key)] == 0
    assert s[("execflow_parked_total", (("component", "worker_close"),))] == 0
    assert s[("execflow_processing_seconds_count", (("component", "dispatcher"),))] == 0
    assert ("execflow_parked_total", (("component", "dispatcher"),)) not in s


def test_process_metrics_of_each_named_process() -> None:
    metrics = Metrics("supervisor")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        metrics.watch_processes(lambda: {"supervisor": os.getpid(), "worker_open-2": child.pid})
        s = _samples(metrics.exposition())
        mine = (("component", "supervisor"), ("process", "supervisor"))
        theirs = (("component", "worker_open"), ("process", "worker_open-2"))
        assert s[("process_resident_memory_bytes", mine)] > 0
        assert s[("process_resident_memory_bytes", theirs)] > 0
        assert s[("process_start_time_seconds", theirs)] >= s[("process_start_time_seconds", mine)]
    finally:
        child.kill()
        child.wait()
    # a process gone is left out, not an error
    s = _samples(metrics.exposition())
    assert ("process_resident_memory_bytes", theirs) not in s


def test_component_of_a_process_name() -> None:
    assert component_of("worker_open-2") == "worker_open"
    assert component_of("worker_open") == "worker_open"
    assert component_of("lp_gateway-lmax") == "lp_gateway-lmax"


def test_run_all_names_the_metrics_directory_in_its_childrens_environment(
    tmp_path: Path,
) -> None:
    assert child_environment(None) is None
    env = child_environment(tmp_path)
    assert env is not None
    assert env["EXECFLOW_METRICS_MULTIPROC_DIR"] == env[PROMETHEUS_MULTIPROC_DIR] == str(tmp_path)


@pytest.mark.parametrize("found", [None, "elsewhere"])
def test_multiprocess_metrics_refuse_an_environment_naming_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, found: str | None
) -> None:
    if found is None:
        monkeypatch.delenv(PROMETHEUS_MULTIPROC_DIR, raising=False)
    else:
        monkeypatch.setenv(PROMETHEUS_MULTIPROC_DIR, str(tmp_path / found))
    # refused before prometheus_client's globals change, so safe in this process
    with pytest.raises(ConfigError, match=PROMETHEUS_MULTIPROC_DIR) as raised:
        Metrics("worker_open", multiprocess_dir=tmp_path / "metrics")
    assert raised.value.fields["setting"] == PROMETHEUS_MULTIPROC_DIR
    assert not getattr(values.ValueClass, "_multiprocess", False)
    with pytest.raises(ValueError, match="not both"):
        Metrics("x", multiprocess_dir=tmp_path, aggregate_dir=tmp_path)
