"""A pipeline process loads only what it uses (issue 14, "Memory").

Each ``execflow run`` process is started for real on RabbitMQ, Redis and PostgreSQL
(unique queue and key prefixes), through the console script's own entry point. Once it
has logged that it is consuming it is stopped with SIGTERM, and the top-level packages
it had imported are written out at exit: the API stack (FastAPI, Starlette, Uvicorn),
the migration tool (Alembic, Mako), the terminal renderers (Rich, Pygments) and, with no
metrics configured, prometheus_client (with the stdlib's HTTP and WSGI servers) must not
be among them, nor SQLAlchemy, sqlite3 and asyncpg in the dispatcher and the workers (they
run on PostgreSQL here). Each of those costs RSS in every one of ``run all``'s processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from execflow.pipeline.seed import apply_seed, read_seed
from execflow.pipeline.services import Services
from execflow.settings import Settings
from tests.pipeline.flow import SEED_FILE

pytestmark = pytest.mark.integration

HEAVY = {"fastapi", "starlette", "uvicorn", "sse_starlette", "alembic", "mako", "pygments", "rich"}
# loaded by execflow.metrics, which a process imports only when metrics are configured
# (cli.run); none are here
METRICS = {"prometheus_client", "wsgiref", "http.server"}

# Runs the CLI as the console script does; at exit (SIGTERM ends the command normally)
# writes the imported top-level packages to argv[1]. A thread sends the SIGTERM once the
# component's log shows it consuming.
_PROBE = """
import atexit, json, os, signal, sys, threading, time
from pathlib import Path

out, log, tag = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
atexit.register(lambda: out.write_text(json.dumps(sorted(sys.modules))))

def stop_once_started():
    while tag not in (log.read_text() if log.exists() else ""):
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=stop_once_started, daemon=True).start()
sys.argv = ["execflow", "run", *sys.argv[4:]]
from execflow.cli.app import main
main()
"""

PROCESSES = {
    "dispatcher": ("dispatcher.log", "[DISPATCH:STARTED]", ("dispatcher",)),
    "worker open": ("worker_open.log", "[OPEN:STARTED]", ("worker", "open")),
    "db writer": ("db_writer.log", "[DBWRITER:STARTED]", ("db-writer",)),
}
# the other components' modules, which ``execflow run`` imports in their own process only
_DISPATCHER = {"execflow.pipeline.dispatcher", "execflow.pipeline.stuck"}
_WORKERS = {"execflow.pipeline.workers", "execflow.pipeline.transact"}
_DB_WRITER = {"execflow.pipeline.dbwriter"}
NOT_OWN = {
    "dispatcher": _WORKERS | _DB_WRITER,
    "worker open": _DISPATCHER | _DB_WRITER,
    "db writer": _DISPATCHER | _WORKERS,
}
# the dispatcher and the workers connect the database on first use (backends.deferred):
# with the state store seeded, they never load SQLAlchemy (nor, on PostgreSQL, sqlite3; nor
# asyncpg, which their start-up check runs in a child interpreter)
NO_DATABASE = {"dispatcher", "worker open"}


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        EXECFLOW_BROKER_URL=settings.broker_url,
        EXECFLOW_STATE_URL=settings.state_url,
        EXECFLOW_DATABASE_URL=settings.database_url,
        EXECFLOW_QUEUE_PREFIX=settings.queue_prefix,
        EXECFLOW_LOG_DIR=str(settings.log_dir),
        EXECFLOW_SHUTDOWN_TIMEOUT_S="2",
    )
    for name in ("EXECFLOW_METRICS_PORT", "EXECFLOW_METRICS_MULTIPROC_DIR"):
        env.pop(name, None)  # no metrics: what a process loads without them is tested
    return env


@pytest.mark.parametrize("kind", list(PROCESSES))
async def test_a_pipeline_process_imports_no_api_migration_terminal_or_metrics_stack(
    kind: str, real_services: Services, real_settings: Settings, tmp_path: Path
) -> None:
    # real_services has migrated the fresh database, as the first process of a deployment
    # does; the process under test then finds the schema at head. With an account in the
    # store, a starting process has nothing to rebuild from the database.
    await apply_seed(await read_seed(SEED_FILE), real_services.state, real_services.database)
    log_name, tag, args = PROCESSES[kind]
    out = tmp_path / "modules.json"
    log = Path(real_settings.log_dir) / log_name
    command = [sys.executable, "-c", _PROBE, str(out), str(log), tag, *args]
    done = await asyncio.to_thread(
        subprocess.run, command, env=_env(real_settings), capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    modules = set(json.loads(out.read_text()))
    imported = {m.split(".")[0] for m in modules}
    assert "execflow" in imported and "aio_pika" in imported  # it did run, on the broker
    assert imported & HEAVY == set()
    assert modules & METRICS == set()
    assert modules & NOT_OWN[kind] == set()
    if kind in NO_DATABASE:
        # the start-up check connects with asyncpg in a child interpreter
        assert imported & {"sqlalchemy", "sqlite3", "asyncpg"} == set()
    else:
        assert "sqlalchemy" in imported
