"""A failed RabbitMQ cluster test keeps its nodes' logs in its run directory; a passed one
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


def test_fails(cluster):
    assert False, "the fault under test"


def test_passes(cluster):
    pass
"""


def test_only_a_failed_cluster_test_keeps_the_nodes_logs(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from tests.faults.conftest import pytest_runtest_makereport")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-s", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    if outcomes.get("skipped"):
        pytest.skip("no RabbitMQ installed: the cluster cannot even be laid out")
    assert (outcomes.get("failed"), outcomes.get("passed")) == (1, 1), result.stdout.str()
    found = re.search(r"run directory kept: (\S+test_fails0) ", result.stdout.str())
    assert found is not None, result.stdout.str()
    run_dir = Path(found[1])
    kept = sorted(run_dir.glob("rabbit-cluster/*/node.log"))
    assert len(kept) == 3
    assert [path.read_text().split()[0] for path in kept] == [path.parent.name for path in kept]
    assert "test_passes0" not in result.stdout.str()
    assert not (run_dir.parent / "test_passes0" / "rabbit-cluster").exists()
