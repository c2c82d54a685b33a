"""``execflow run all`` on RabbitMQ + Redis + PostgreSQL processes a simulator run cleanly.

Isolated from other engineers using the same servers: a unique queue prefix, a unique
Redis key prefix and a fresh PostgreSQL database, all removed at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from execflow.backends.bus import QueueNames
from execflow.backends.redis_state import RedisStateStore
from tests.backends.conftest import delete_queues, fresh_pg_database, make_rabbit_bus, unique
from tests.services import REDIS_URL, need_service

ENTRY = "from execflow.cli.app import main; main()"


async def execflow(env: dict[str, str], *args: str, timeout_s: float) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ENTRY,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    return process.returncode or 0, out.decode()


async def queues_with_prefix(prefix: str) -> set[str]:
    """Every queue of this run, delay queues of retries included."""
    listing = await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "-q", "--no-table-headers", "list_queues", "name"],
        capture_output=True,
        text=True,
        check=False,
    )
    return {name for name in listing.stdout.split() if name.startswith(prefix + ".")}


async def wait_for_consumers(names: QueueNames, timeout_s: float) -> None:
    bus = await make_rabbit_bus(names)
    try:
        queues = [names.reports, names.db_updates, *(names.worker(k) for k in ("open", "close"))]
        for _ in range(int(timeout_s * 10)):
            counts = [await bus.consumer_count(q) for q in queues]
            if min(counts) >= 1:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(
            f"pipeline consumers not attached: {dict(zip(queues, counts, strict=True))}"
        )
    finally:
        await bus.close()


@pytest.mark.integration
async def test_run_all_processes_a_simulator_run_with_a_clean_reconciliation(
    tmp_path: Path,
) -> None:
    for service in ("rabbitmq", "redis", "postgresql"):
        need_service(service)
    prefix = unique("efsim")
    names = QueueNames(prefix)
    metrics_port = _free_port()
    async with fresh_pg_database() as database_url:
        env = {
            **os.environ,
            "EXECFLOW_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/",
            "EXECFLOW_STATE_URL": f"{REDIS_URL}?key_prefix={prefix}",
            "EXECFLOW_DATABASE_URL": database_url,
            "EXECFLOW_QUEUE_PREFIX": prefix,
            "EXECFLOW_LOG_DIR": str(tmp_path / "logs"),
            "EXECFLOW_SHUTDOWN_TIMEOUT_S": "5",
            "EXECFLOW_METRICS_PORT": str(metrics_port),
        }
        supervisor = await asyncio.create_subprocess_exec(
            sys.executable, "-c", ENTRY, "run", "all", env=env
        )
        try:
            await wait_for_consumers(names, timeout_s=90)
            # the scenario's simulator serves no metrics here: the port is run all's
            alone = {k: v for k, v in env.items() if k != "EXECFLOW_METRICS_PORT"}
            code, out = await execflow(
                alone,
                "simulate",
                "--orders",
                "60",
                "--accounts",
                "4",
                "--reject-rate",
                "0.05",
                "--duplicate-rate",
                "0.05",
                "--reorder-rate",
                "0.05",
                "--malformed-rate",
                "0.02",
                "--partial-rate",
                "0.1",
                timeout_s=300,
            )
            assert code == 0, out
            assert "reconciliation: clean" in out
            code, out = await execflow(env, "reconcile", timeout_s=120)
            assert code == 0, out
            # One endpoint for every child process (prometheus multiprocess mode).
            scrape = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics_port}/metrics")
        finally:
            if supervisor.returncode is None:
                supervisor.send_signal(signal.SIGTERM)
            stopped = await asyncio.wait_for(supervisor.wait(), 60)
            store = RedisStateStore(REDIS_URL, key_prefix=prefix)
            await store.connect()
            await store.flush_all()
            await store.close()
            await delete_queues(set(names.all()) | await queues_with_prefix(prefix))
        assert stopped == 0
        supervisor_log = (tmp_path / "logs" / "supervisor.log").read_text()
        assert "SUPERVISOR:STOPPED" in supervisor_log
        assert "SUPERVISOR:CHILD_EXITED" not in supervisor_log
        for component in ("dispatcher", "worker_open", "worker_close", "db_writer"):
            assert f'execflow_component_up{{component="{component}"}} 1.0' in scrape
        received = [
            float(line.split()[-1])
            for line in scrape.splitlines()
            if line.startswith("execflow_reports_received_total")
        ]
        assert received and sum(received) > 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body.decode()
