"""Fixtures of the fault suite: its own servers, a fresh distributed run per test.

The disruptive tests (marker ``faults``) stop, kill, freeze and wipe servers: never the
ones on the default ports (a developer's own). ``fault_servers`` starts a throwaway
RabbitMQ, Redis and PostgreSQL once per session (``services.py``: own ports, own data
directory, removed at the end); each ``make_run`` test finds them up and leaves them up.
``default_sentinels`` plants sentinels on the default servers before the first fault
test; ``test_sentinels.py``, sorted after every other test, checks them.

``pytest_collection_modifyitems`` still moves every ``faults`` item after the other tests
of the session: they are slow and keep both cores busy.

Environment:

* ``EXECFLOW_FAULT_STRESS=1``: every fault test runs with every core saturated by
  ``stress-ng`` (``stress.py``), started before the test and stopped after it.
* A failed test that brought a RabbitMQ cluster of its own keeps its run directory: a
  copy of its ``tmp_path`` (the pipeline's ``logs/``, ``simlogs/``, ``supervisor.out``,
  ``simulate.out``) plus each node's logs (``rabbit-cluster/``), under
  ``EXECFLOW_FAULT_KEEP`` (default ``$TMPDIR/execflow-fault-runs``) as
  ``<test>-<UTC time>/``; the path is printed in the failure's report. Not pytest's own
  ``tmp_path`` retention: it keeps the last three sessions of the user, and on a box
  where other test sessions run meanwhile (other engineers', as root) a failed run's
  directory was gone minutes later.
* ``EXECFLOW_FAULT_RECORD=DIR``: each finished run adds its row to ``DIR/last_run.json``
  and rewrites ``DIR/last_run.md`` (the README table: ``EXECFLOW_FAULT_RECORD=tests/faults``);
  the soak writes ``DIR/last_soak.txt``. Without it, a test run writes no file of the tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from execflow.settings import require_services
from tests.faults.harness import Endpoints, PipelineRun, RunConfig, Verdict
from tests.faults.sentinels import Sentinels, plant, remove
from tests.faults.services import (
    FaultServers,
    ServerUnavailable,
    ThrowawayRabbitCluster,
    port_answers,
)
from tests.faults.stress import DEADLINE_SCALE, cpu_load, deadline_s, stress_requested

RECORD_ENV = "EXECFLOW_FAULT_RECORD"
KEEP_ENV = "EXECFLOW_FAULT_KEEP"
SENTINEL_TEST = "test_default_servers_keep_their_sentinels"
DEFAULT_PORTS = {"rabbitmq": 5672, "redis": 6379, "postgresql": 5432}

MakeRun = Callable[[RunConfig], Awaitable[PipelineRun]]
T = TypeVar("T")
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Each phase's report on the item, for fixtures that act on a failure at teardown."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def has_failed(request: pytest.FixtureRequest) -> bool:
    """True when the test's setup or call failed (read at teardown)."""
    reports = request.node.stash.get(_REPORTS, {})
    return any(report.failed for report in reports.values())


def kept_runs_dir() -> Path:
    """Where failed runs are kept: ``EXECFLOW_FAULT_KEEP``, else
    ``$TMPDIR/execflow-fault-runs``."""
    value = os.environ.get(KEEP_ENV, "").strip()
    return Path(value) if value else Path(tempfile.gettempdir()) / "execflow-fault-runs"


def keep_failed_run(name: str, run_dir: Path, cluster: ThrowawayRabbitCluster) -> Path:
    """Copy ``run_dir`` and each node's logs (and console output) to a directory of their
    own under ``kept_runs_dir()``, which nothing removes; that directory."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = kept_runs_dir() / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{stamp}"
    shutil.copytree(run_dir, kept, ignore=shutil.ignore_patterns(".*.lock"), dirs_exist_ok=True)
    nodes = kept / "rabbit-cluster"
    for node in cluster.nodes:
        logs = Path(node.env["RABBITMQ_LOG_BASE"])
        if logs.is_dir():
            shutil.copytree(logs, nodes / node.node, dirs_exist_ok=True)
        if node.log.exists():
            nodes.mkdir(parents=True, exist_ok=True)
            shutil.copy2(node.log, nodes / node.log.name)
    return kept


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``faults`` tests after every other test, and the sentinel check after them all."""
    calm = [item for item in items if item.get_closest_marker("faults") is None]
    disruptive = [item for item in items if item.get_closest_marker("faults") is not None]
    last = [item for item in disruptive if item.name == SENTINEL_TEST]
    items[:] = calm + [item for item in disruptive if item not in last] + last
    if stress_requested():
        _scale_timeouts(config, disruptive)


def _scale_timeouts(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under stress-ng the whole test may take ``DEADLINE_SCALE`` times longer, as each
    of its deadlines does (``stress.deadline_s``): pytest-timeout's limit too."""
    default = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        limit = float(marker.args[0]) if marker is not None and marker.args else default
        if limit > 0:
            item.add_marker(pytest.mark.timeout(limit * DEADLINE_SCALE), append=False)


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on a loop of its own (in a thread: pytest-asyncio owns this one)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="session")
def default_sentinels() -> Iterator[Sentinels]:
    """Sentinels on the default-port servers that answer, planted before any fault."""
    answering = {name for name, port in DEFAULT_PORTS.items() if port_answers(port)}
    planted = run_sync(plant(answering))
    try:
        yield planted
    finally:
        run_sync(remove(planted))


@pytest.fixture(scope="session")
def fault_servers(default_sentinels: Sentinels) -> Iterator[FaultServers]:
    """The session's throwaway RabbitMQ, Redis and PostgreSQL; stopped and removed at the end.

    When they cannot start, the fault tests fail under ``EXECFLOW_REQUIRE_SERVICES=1``
    (CI) and skip otherwise, with the reason.
    """
    try:
        servers = FaultServers.start()
    except (ServerUnavailable, OSError) as error:
        message = f"the fault suite cannot start its throwaway servers: {error}"
        if require_services():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
def rabbit_cluster(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[ThrowawayRabbitCluster]:
    """A 3-node RabbitMQ cluster of the test's own (``services.ThrowawayRabbitCluster``);
    killed and removed at the end, the run kept if the test failed (``keep_failed_run``).
    Skips (fails under ``EXECFLOW_REQUIRE_SERVICES=1``) when it cannot start."""
    with started_rabbit_cluster(request, tmp_path) as cluster:
        yield cluster


@contextlib.contextmanager
def started_rabbit_cluster(
    request: pytest.FixtureRequest, run_dir: Path, **options: Any
) -> Iterator[ThrowawayRabbitCluster]:
    """``ThrowawayRabbitCluster.start(**options)``, closed at the end (when the test failed,
    ``run_dir`` and the nodes' logs kept first: ``keep_failed_run``); a cluster that
    cannot start skips the test (fails it under ``EXECFLOW_REQUIRE_SERVICES=1``)."""
    try:
        cluster = ThrowawayRabbitCluster.start(**options)
    except (ServerUnavailable, OSError) as error:
        message = f"the throwaway RabbitMQ cluster cannot start: {error}"
        if require_services():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield cluster
    finally:
        try:
            if has_failed(request):
                kept = keep_failed_run(request.node.name, run_dir, cluster)
                print(f"run directory kept: {kept} (the nodes' logs in its rabbit-cluster/)")
        finally:
            cluster.close()


@pytest.fixture
def restore_services(fault_servers: FaultServers) -> Iterator[FaultServers]:
    """The throwaway servers answer when the test starts and again when it ends."""
    fault_servers.ensure()
    try:
        yield fault_servers
    finally:
        fault_servers.ensure()


@pytest.fixture(autouse=True)
def cpu_stress(request: pytest.FixtureRequest) -> Iterator[None]:
    """With ``EXECFLOW_FAULT_STRESS=1``, every core busy for the whole of a fault test."""
    if request.node.get_closest_marker("faults") is None or not stress_requested():
        yield
        return
    with cpu_load():
        yield


@contextlib.asynccontextmanager
async def run_on(
    tmp_path: Path,
    services: FaultServers,
    endpoints: Endpoints,
    config: RunConfig,
    start_timeout_s: float,
    before_cleanup: Callable[[], Awaitable[object]] | None = None,
    queues_die_with_the_broker: bool = False,
) -> AsyncIterator[PipelineRun]:
    """A started ``PipelineRun`` on ``endpoints`` and a fresh database of the suite's
    throwaway PostgreSQL (``services``): for the tests that bring a cluster of their own.
    Stopped and cleaned up at the end; ``before_cleanup`` (bringing that cluster back, so
    that the run's keys and queues can be removed) runs in between.
    ``queues_die_with_the_broker``: the broker is the test's own and is removed after it,
    so its queues are left to go with it (deleting quorum queues one of whose members was
    killed took 55 s)."""
    from tests.backends.conftest import fresh_pg_database

    async with fresh_pg_database(services.postgres.url) as pg_url:
        run = PipelineRun(tmp_path, pg_url, config, endpoints)
        try:
            await run.start(start_timeout_s=start_timeout_s)
            yield run
        finally:
            await run.stop()
            if before_cleanup is not None:
                await before_cleanup()
            await run.cleanup(queues=not queues_die_with_the_broker)


@pytest.fixture
async def make_run(tmp_path: Path, restore_services: FaultServers) -> AsyncIterator[MakeRun]:
    """Start a ``PipelineRun`` on the throwaway servers and a fresh database of theirs;
    stopped and cleaned up at the end."""
    from tests.backends.conftest import fresh_pg_database

    servers = restore_services
    runs: list[PipelineRun] = []
    async with fresh_pg_database(servers.postgres.url) as pg_url:

        async def start(config: RunConfig) -> PipelineRun:
            run = PipelineRun(tmp_path, pg_url, config, servers)
            runs.append(run)
            await run.start()
            return run

        try:
            yield start
        finally:
            servers.ensure()
            for run in runs:
                await run.stop()
                await run.cleanup()


def record_dir() -> Path | None:
    """Where ``EXECFLOW_FAULT_RECORD`` asks the results to be written (None: nowhere)."""
    value = os.environ.get(RECORD_ENV, "").strip()
    return Path(value) if value else None


def record(verdict: Verdict) -> None:
    """Keep this run's row for the README table (``last_run.json`` / ``last_run.md``),
    only when ``EXECFLOW_FAULT_RECORD`` names a directory."""
    directory = record_dir()
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    results_json = directory / "last_run.json"
    rows: dict[str, Any] = {}
    if results_json.exists():
        try:
            rows = json.loads(results_json.read_text())
        except ValueError:
            rows = {}
    rows[verdict.fault] = verdict.row()
    results_json.write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    lines = [
        "| fault | reports confirmed | lost | applied twice | in DLQ (reasons) | recovery s |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for name in sorted(rows):
        row = rows[name]
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(row["dlq_reasons"].items()))
        recovery = "-" if row["recovery_s"] is None else f"{row['recovery_s']}"
        unlogged = row.get("unlogged", 0)
        lost = (
            f"{row['lost'] - unlogged} ({unlogged} unclassified: their log lines were dropped)"
            if unlogged
            else f"{row['lost']}"
        )
        lines.append(
            f"| {name} | {row['confirmed']} | {lost} | {row['applied_twice']} "
            f"| {row['dlq']}{f' ({reasons})' if reasons else ''} | {recovery} |"
        )
    (directory / "last_run.md").write_text("\n".join(lines) + "\n")


def assert_clean(
    verdict: Verdict,
    *,
    recovery: bool = True,
    outage: bool = False,
    logs_intact: bool = True,
    recovery_limit_s: float = 10.0,
) -> None:
    """See below; with ``logs_intact=False`` (the logging fault) a confirmed report that
    left no event and no DLQ entry may also be one whose SKIP:STALE / IGNORED line was
    dropped with the logs: it is counted ``unlogged`` when no worker's line mentions it.
    """
    _assert_clean(
        verdict,
        recovery=recovery,
        outage=outage,
        logs_intact=logs_intact,
        recovery_limit_s=recovery_limit_s,
    )


def _assert_clean(
    verdict: Verdict, *, recovery: bool, outage: bool, logs_intact: bool, recovery_limit_s: float
) -> None:
    """The issue's acceptance criteria for one fault run.

    The driver exits 0 when every order it placed reached a final status and its own
    reconciliation was clean. With ``outage``, the reconciliation must still be clean (a
    committed action whose publish failed is re-sent by the intake itself:
    ``INTAKE:SEND_DEFERRED`` / ``RESENT``), and orders may stay in flight only as many as
    intake calls failed on the outage (a failed close leaves its position open).
    """
    record(verdict)
    context = (
        f"{verdict.row()}\nnotes: {verdict.notes}\ndriver: {verdict.driver_output[-1500:]}\n"
        f"reconcile: {verdict.reconcile_output[-1500:]}"
    )
    if outage:
        assert "reconciliation: clean" in verdict.driver_output, context
        assert 0 <= verdict.unsettled <= verdict.intake_errors, context
    else:
        assert verdict.driver_exit == 0, context
    assert verdict.confirmed >= 2000 or os.environ.get("EXECFLOW_FAULTS_SMALL"), context
    if logs_intact:
        assert verdict.lost == [], context
    else:
        assert set(verdict.lost) == set(verdict.unlogged), context
    assert verdict.applied_twice == [], context
    assert verdict.reconcile_exit == 0, context
    if logs_intact:
        assert verdict.log_problems == [], verdict.log_problems[:10]
    if recovery:
        # The recovery criterion: >= 80 % of the pre-fault event rate within 10 s
        # of the fault clearing (first 2 s window; samples every 0.25 s). Generous on
        # purpose: the shared 2-core CI box runs ~11 processes here.
        # 10 s on a machine of its own; DEADLINE_SCALE times that with every core hogged
        limit = deadline_s(recovery_limit_s)
        assert verdict.recovery_s is not None and verdict.recovery_s <= limit, context
