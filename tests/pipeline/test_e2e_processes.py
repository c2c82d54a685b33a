"""``execflow run ...`` as separate processes on RabbitMQ + Redis + PostgreSQL.

Two instances of the open worker share one queue; each process logs its start line with
its settings (secrets masked), its final STATS line and its stop line on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from execflow.pipeline.intake import NumericIds, OrderIntake
from execflow.pipeline.seed import apply_seed, read_seed
from execflow.pipeline.services import Services
from execflow.settings import Settings
from tests.pipeline.flow import ASK, SEED_FILE, USER

pytestmark = pytest.mark.integration

COMMANDS = {
    "db_writer": ("db-writer",),
    "dispatcher": ("dispatcher",),
    "worker_open": ("worker", "open", "--instance", "1"),
    "worker_open-2": ("worker", "open", "--instance", "2"),
}
EXECFLOW = str(Path(sys.executable).with_name("execflow"))
TAGS = {"db_writer": "DBWRITER", "dispatcher": "DISPATCH", "worker_open": "OPEN"}


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        EXECFLOW_BROKER_URL=settings.broker_url,
        EXECFLOW_STATE_URL=settings.state_url,
        EXECFLOW_DATABASE_URL=settings.database_url,
        EXECFLOW_QUEUE_PREFIX=settings.queue_prefix,
        EXECFLOW_LOG_DIR=str(settings.log_dir),
        EXECFLOW_SHUTDOWN_TIMEOUT_S="2",
        EXECFLOW_DB_BATCH_TIMEOUT_S="0.02",
    )
    return env


async def _text(path: Path) -> str:
    return await asyncio.to_thread(lambda: path.read_text() if path.exists() else "")


async def _wait_for(path: Path, needle: str) -> None:
    async with asyncio.timeout(60):
        while needle not in await _text(path):  # noqa: ASYNC110 - another process writes it
            await asyncio.sleep(0.1)


# C901: one end-to-end story (start, trade, check, stop) told in order in one place
async def test_components_as_processes(  # noqa: C901
    real_services: Services, real_settings: Settings
) -> None:
    services, settings = real_services, real_settings
    await apply_seed(await read_seed(SEED_FILE), services.state, services.database)
    processes = {
        name: await asyncio.create_subprocess_exec(
            EXECFLOW,
            "run",
            *args,
            env=_env(settings),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        for name, args in COMMANDS.items()
    }
    log_dir = Path(settings.log_dir)
    try:
        for name in COMMANDS:
            tag = TAGS[name.split("-")[0]]
            await _wait_for(log_dir / f"{name}.log", f"[{tag}:STARTED]")
        intake = OrderIntake(services, NumericIds(4000000000000))
        orders = []
        for _ in range(6):
            placed = await intake.open_market(USER, "EURUSD", "BUY", "0.10")
            assert placed.accepted and placed.order_id
            orders.append(placed.order_id)
        for order_id in orders:
            body = (
                f'{{"type":"8","clordid":"{order_id}","exec_id":"X{order_id}",'
                f'"ord_status":"2","cum_qty":"0.10","avg_px":"{ASK}","symbol":"EURUSD"}}'
            ).encode()
            for _ in range(2):  # twice: the two open workers may race on it
                await services.bus.publish(services.queues.reports, body)
        async with asyncio.timeout(60):
            while True:
                events = [await services.database.events_for_order(o) for o in orders]
                if all(any(e.kind == "ORDER_OPENED" for e in found) for found in events):
                    break
                await asyncio.sleep(0.1)
    finally:
        for process in processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        codes = {name: await process.wait() for name, process in processes.items()}
    errors = {
        name: (await p.stderr.read()).decode()[-2000:] for name, p in processes.items() if p.stderr
    }
    assert codes == dict.fromkeys(COMMANDS, 0), errors
    account = await services.state.get_account(USER)
    assert account is not None and len(account.data["positions"]) == 6
    for order_id in orders:
        kinds = [e.kind for e in await services.database.events_for_order(order_id)]
        assert kinds.count("ORDER_OPENED") == 1
    for name in COMMANDS:
        text = await _text(log_dir / f"{name}.log")
        start = next(line for line in text.splitlines() if "[PROCESS:START]" in line)
        assert "broker_url=amqp://guest:***@" in start and "guest:guest" not in text
        assert "[PROCESS:STOP]" in text and "signal=SIGTERM" in text
        assert "final=true" in text
    opened = [
        line
        for name in ("worker_open", "worker_open-2")
        for line in (await _text(log_dir / f"{name}.log")).splitlines()
        if "[OPEN:SUCCESS]" in line
    ]
    assert len(opened) == 6
