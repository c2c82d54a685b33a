"""The shipped monitoring, proven against a real Prometheus and a real ``run all``.

``execflow run all --simulator`` runs on 127.0.0.1 against the local RabbitMQ, Redis
and PostgreSQL (a unique queue prefix, Redis key prefix and database, removed at the
end); this test process plays the platform API's intake (orders placed through
``OrderIntake``, its metrics served as the API's would be). Debian's ``prometheus``
scrapes both with the shipped ``deploy/prometheus/prometheus.yml`` and evaluates the
shipped ``alerts.yml``, copied with only the targets (its ``targets/*.yml`` file), the
intervals (1 s) and the alerts' ``for:`` durations (3 s) changed. Then:

* the db writer is frozen (SIGSTOP) while reports flow: ``ExecflowBacklogGrowing``
  fires for ``db_updates``;
* worker open is frozen: once the broker drops its connection (missed heartbeats),
  ``ExecflowQueueWithoutConsumer`` fires for its queue;
* every Grafana panel's expressions (from the dashboard JSON) return data through
  ``/api/v1/query``.

Skips when the ``prometheus`` binary is missing, unless EXECFLOW_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from execflow.backends.bus import QueueNames
from execflow.backends.redis_state import RedisStateStore
from execflow.domain.enums import Side
from execflow.errors import ExecflowError
from execflow.logs.setup import setup_logging
from execflow.metrics import Metrics, MetricsServer
from execflow.pipeline.intake import OrderIntake
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings, require_services
from execflow.sim.feed import DEFAULT_SYMBOLS, PriceFeed
from execflow.sim.refdata import demo_seed
from tests.backends.conftest import delete_queues, fresh_pg_database, unique
from tests.services import AMQP_URL, REDIS_URL, need_service
from tests.sim.test_run_all import queues_with_prefix, wait_for_consumers

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENTRY = "from execflow.cli.app import main; main()"
ORDERS_PER_S = 10.0


def _prometheus() -> str:
    found = shutil.which("prometheus")
    if found is None:
        message = "prometheus is not installed (Debian package prometheus; .ci/apt-deps)"
        if require_services():
            pytest.fail(message + " and EXECFLOW_REQUIRE_SERVICES=1")
        pytest.skip(message)
    return found


_STARTED = time.monotonic()


def _progress(what: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f} s] {what}", flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _prometheus_copy(directory: Path, targets: list[str]) -> Path:
    """The shipped config and rules: only the targets, intervals and ``for:`` changed.

    The shipped config reads its targets from ``targets/*.yml`` beside it: the copy gets
    that file with this run's two ports.
    """
    config = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    config = re.sub(r"(scrape|evaluation|refresh)_interval: \d+s", r"\1_interval: 1s", config)
    assert 'files: ["targets/*.yml"]' in config, config
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    rules = re.sub(r"^(\s+for: )\d+[smh]$", r"\g<1>3s", rules, flags=re.MULTILINE)
    (directory / "alerts.yml").write_text(rules)
    (directory / "targets").mkdir()
    listed = "".join(f"    - {target}\n" for target in targets)
    (directory / "targets" / "execflow.yml").write_text(f"- targets:\n{listed}")
    path = directory / "prometheus.yml"
    path.write_text(config)
    return path


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    answer = _get_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _firing(base: str) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = _get_json(f"{base}/api/v1/alerts")["data"]["alerts"]
    return [a for a in alerts if a["state"] == "firing"]


async def _until(what: str, check: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await asyncio.to_thread(check)
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(0.5)


def _child_pid(log_dir: Path, name: str) -> int:
    text = (log_dir / "supervisor.log").read_text(errors="replace")
    pids = re.findall(rf"\[SUPERVISOR:CHILD_STARTED\].* child={name} pid=(\d+)", text)
    assert pids, f"{name} never started"
    return int(pids[-1])


async def _place_orders(services: Services, stop: asyncio.Event, placed: list[str]) -> None:
    """Market orders at a steady pace until ``stop`` (the reports flow all along)."""
    feed = PriceFeed(DEFAULT_SYMBOLS, services.state.put_price, random.Random(1), services.clock)
    seed = demo_seed(10, random.Random(2), feed)
    await apply_seed(seed, services.state, services.database)
    intake = OrderIntake(services)
    accounts = [a.account_id for a in seed.accounts]
    try:
        while not stop.is_set():
            account = accounts[len(placed) % len(accounts)]
            with contextlib.suppress(ExecflowError):
                result = await intake.open_market(account, "EURUSD", Side.BUY, "0.01")
                if result.order_id is not None:
                    placed.append(result.order_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / ORDERS_PER_S)
    finally:
        await intake.shutdown(timeout_s=5)


@contextlib.asynccontextmanager
async def _frozen(pid: int) -> AsyncIterator[None]:
    """SIGSTOP a process (alive, connections open, nothing answered), SIGCONT after."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.integration
# the test's own bound (280 s, asyncio.timeout below) ends it first, so that the cleanup
# (run all stopped, Prometheus stopped, queues, keys and database removed) always runs
@pytest.mark.timeout(420)
async def test_alerts_fire_and_every_panel_has_data_in_a_real_prometheus(
    tmp_path: Path,
) -> None:
    prometheus_bin = _prometheus()
    for service in ("rabbitmq", "redis", "postgresql"):
        need_service(service)
    prefix = unique("efprom")
    names = QueueNames(prefix)
    run_all_port, intake_port, prometheus_port = _free_port(), _free_port(), _free_port()
    log_dir = tmp_path / "logs"
    async with fresh_pg_database() as database_url:
        values = {
            "broker_url": AMQP_URL,
            "state_url": f"{REDIS_URL}?key_prefix={prefix}",
            "database_url": database_url,
            "queue_prefix": prefix,
            "log_dir": str(log_dir),
            "shutdown_timeout_s": "5",
            # a frozen process loses its broker connection after ~2 missed heartbeats
            "amqp_heartbeat_s": "3",
            "queue_sample_interval_s": "1",
            "stuck_check_interval_s": "1",
        }
        env = {
            **os.environ,
            **{f"EXECFLOW_{k.upper()}": v for k, v in values.items()},
            "EXECFLOW_METRICS_PORT": str(run_all_port),
        }
        supervisor = await asyncio.create_subprocess_exec(
            sys.executable, "-c", ENTRY, "run", "all", "--simulator", "--reconcile-every", "2",
            env=env,
        )  # fmt: skip
        prometheus: asyncio.subprocess.Process | None = None
        stop_orders = asyncio.Event()
        settings = Settings(**values)  # type: ignore[arg-type]
        logs = setup_logging(settings.model_copy(update={"log_dir": tmp_path / "intake"}), "api")
        intake_metrics = Metrics("api")
        intake_server = MetricsServer(intake_metrics, "127.0.0.1", intake_port).start()
        try:
            # bounded: about a minute on a quiet machine; the start of eleven processes
            # takes most of the rest on a loaded one
            async with asyncio.timeout(280):
                await wait_for_consumers(names, timeout_s=150)
                _progress(f"run all consuming (:{run_all_port})")
                config = _prometheus_copy(
                    tmp_path, [f"127.0.0.1:{run_all_port}", f"127.0.0.1:{intake_port}"]
                )
                prometheus = await asyncio.create_subprocess_exec(
                    prometheus_bin,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                    "--log.level=warn",
                    stdout=asyncio.subprocess.DEVNULL,
                )
                base = f"http://127.0.0.1:{prometheus_port}"

                def both_up() -> bool:
                    try:
                        up = _query(base, 'up{job="execflow"} == 1')
                    except OSError:
                        return False
                    return len(up) == 2

                await _until("both targets scraped", both_up, 30)
                _progress(f"prometheus {base} scrapes run all and the intake (:{intake_port})")
                async with open_services(settings, logs, metrics=intake_metrics) as services:
                    placed: list[str] = []
                    orders = asyncio.create_task(_place_orders(services, stop_orders, placed))
                    # one message the dispatcher refuses (an LP sending garbage): the DLQ panel
                    await services.bus.publish(names.reports, b"\x00 not a report")
                    try:
                        seen = await _the_alerts(base, log_dir, names)
                        panels = await asyncio.to_thread(_panels_with_data, base)
                    finally:
                        stop_orders.set()
                        await orders
                _progress(f"orders placed: {len(placed)}")
                for line in seen + panels:
                    print(line)
        finally:
            stop_orders.set()
            intake_server.stop()
            await asyncio.to_thread(logs.close)
            if prometheus is not None and prometheus.returncode is None:
                prometheus.terminate()
                await asyncio.wait_for(prometheus.wait(), 30)
            if supervisor.returncode is None:
                supervisor.send_signal(signal.SIGTERM)
            stopped = await asyncio.wait_for(supervisor.wait(), 60)
            store = RedisStateStore(REDIS_URL, key_prefix=prefix)
            await store.connect()
            await store.flush_all()
            await store.close()
            await delete_queues(set(names.all()) | await queues_with_prefix(prefix))
        assert stopped == 0


async def _the_alerts(base: str, log_dir: Path, names: QueueNames) -> list[str]:
    """Freeze the db writer, then worker open; wait for each alert to fire."""
    seen: list[str] = []

    def firing(alertname: str, queue: str) -> dict[str, Any] | None:
        for alert in _firing(base):
            labels = alert["labels"]
            if labels["alertname"] == alertname and labels.get("queue") == queue:
                return alert
        return None

    started = time.monotonic()
    _progress("db writer frozen (SIGSTOP), orders flowing")
    async with _frozen(_child_pid(log_dir, "db_writer")):
        alert = await _until(
            "ExecflowBacklogGrowing(db_updates)",
            lambda: firing("ExecflowBacklogGrowing", names.db_updates),
            60,
        )
    seen.append(
        f"FIRING after {time.monotonic() - started:.0f} s (db writer frozen): "
        f"{alert['labels']['alertname']} queue={names.db_updates} value={alert['value']} "
        f"runbook_url={alert['annotations']['runbook_url']}"
    )
    _progress(seen[-1])
    started = time.monotonic()
    _progress("worker open frozen (SIGSTOP), orders flowing")
    async with _frozen(_child_pid(log_dir, "worker_open")):
        alert = await _until(
            "ExecflowQueueWithoutConsumer(worker.open)",
            lambda: firing("ExecflowQueueWithoutConsumer", names.worker("open")),
            60,
        )
    seen.append(
        f"FIRING after {time.monotonic() - started:.0f} s (worker open frozen): "
        f"{alert['labels']['alertname']} queue={names.worker('open')} value={alert['value']} "
        f"runbook_url={alert['annotations']['runbook_url']}"
    )
    _progress(seen[-1])
    return seen


def _panels_with_data(base: str) -> list[str]:
    """Every expression of every dashboard panel returns at least one series."""
    dashboard = json.loads((DEPLOY / "grafana" / "execflow-dashboard.json").read_text())
    lines = []
    empty = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$instance", ".*").replace("$__rate_interval", "1m")
            result = _query(base, expr)
            if not result:
                empty.append(f"{panel['title']}: {expr}")
            lines.append(f"panel {panel['title']!r} [{target['refId']}]: {len(result)} series")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    return lines
