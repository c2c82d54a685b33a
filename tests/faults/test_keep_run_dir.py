"""A failed RabbitMQ cluster test keeps its run directory and its nodes' logs; a passed one
does not (``conftest.started_rabbit_cluster``). The nodes are not booted: their log
directories get one line each, as a booted node's would get many."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

INNER = """
import tempfile
from pathlib import Path

import pytest

from tests.faults.conftest import started_rabbit_cluster
from tests.faults.services import ServerUnavailable, ThrowawayRabbitCluster


def unbooted(**options):
    root = Path(tempfile.mkdtemp(prefix="execflow-keep-test-"))
    try:
        cluster = ThrowawayRabbitCluster(root)
    except (ServerUnavailable, OSError) as error:  # no RabbitMQ installed here
        pytest.skip(str(error))
    for node in cluster.nodes:
        logs = Path(node.env["RABBITMQ_LOG_BASE"])
        logs.mkdir(parents=True)
        (logs / "node.log").write_text(f"{node.node} was here\\n")
    return cluster


@pytest.fixture
def cluster(request, tmp_path, monkeypatch):
    monkeypatch.setattr(ThrowawayRabbitCluster, "start", staticmethod(unbooted))
    with started_rabbit_cluster(request, tmp_path) as cluster:
        yield cluster


def test_fails(cluster, tmp_path):
    (tmp_path / "supervisor.out").write_text("the pipeline was here\\n")
    assert False, "the fault under test"


def test_passes(cluster):
    pass
"""


def test_only_a_failed_cluster_test_keeps_its_run(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keep = tmp_path / "kept"
    monkeypatch.setenv("EXECFLOW_FAULT_KEEP", str(keep))
    pytester.makeconftest("from tests.faults.conftest import pytest_runtest_makereport")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-s", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    if outcomes.get("skipped"):
        pytest.skip("no RabbitMQ installed: the cluster cannot even be laid out")
    assert (outcomes.get("failed"), outcomes.get("passed")) == (1, 1), result.stdout.str()
    found = re.search(r"run directory kept: (\S+) ", result.stdout.str())
    assert found is not None, result.stdout.str()
    kept_run = Path(found[1])
    assert kept_run.parent == keep and kept_run.name.startswith("test_fails-")
    assert (kept_run / "supervisor.out").read_text() == "the pipeline was here\n"
    logs = sorted(kept_run.glob("rabbit-cluster/*/node.log"))
    assert len(logs) == 3
    assert [path.read_text().split()[0] for path in logs] == [path.parent.name for path in logs]
    assert [path.name for path in keep.iterdir()] == [kept_run.name]  # not test_passes
