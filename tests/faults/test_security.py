"""Security checks: no forged log lines, no secrets anywhere, safe modes and binds, no eval.

* A CR/LF/ANSI/U+2028 payload in every text field of a report, through every path
  (routed to a worker, rejected, dead-lettered, malformed, FIX), never makes a log line
  that is not exactly one event (``logcheck.parse_strict``) and never a forged event.
* Log files are 0640 and the directory 0750, whatever the umask.
* Metrics and health bind to 127.0.0.1 unless configured otherwise.
* Nothing in ``src`` evaluates or unpickles anything from outside: the one ``exec`` is the
  log line templates, compiled from spelled field keys only.
* A distributed run on password-bearing URLs (a dedicated RabbitMQ user, a PostgreSQL
  URL with a password) leaves the passwords in no log line, metric or DLQ entry.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import stat
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from execflow.backends.bus import QueueNames
from execflow.backends.memory_bus import InMemoryBus
from execflow.logs import setup_logging
from execflow.metrics import Metrics, MetricsServer
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings
from tests.faults.logcheck import check_dir
from tests.pipeline.flow import ASK, QTY, SYMBOL, USER, Flow

SRC = Path(__file__).resolve().parents[2] / "src" / "execflow"
# A line break in every spelling, a forged event after it, ANSI colour, NUL, C1 NEL. The
# normaliser refuses C0 controls in text fields (DLQ malformed_report), so a second payload
# keeps to what it accepts (U+2028/U+2029, NEL, DEL) and travels through every worker.
FORGED_TAG = "FORGED:LINE"
FORGED = f"2026-11-29T00:00:00.000000Z CRITICAL provider.forged [{FORGED_TAG}] a=1"
PAYLOAD = f'x\r\n{FORGED}\n\x1b[31mred\x1b[0m\u2028{{}}\u2029\x85\x00\t"q" k=v \\'
ACCEPTED_PAYLOAD = f'x\u2028{FORGED}\u2029\x85{FORGED}\x7f\x9b31m"q" k=v \\'
PAYLOADS = (PAYLOAD, ACCEPTED_PAYLOAD)
TEXT_FIELDS = (
    "exec_id", "symbol", "reason", "provider", "lp_order_id", "orig_lifecycle_id",
    "exec_type", "transact_time", "side", "ord_status", "ord_rej_reason", "type", "clordid",
)  # fmt: skip


# -- control characters in every text field ----------------------------------------------------


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    return Settings(
        log_dir=tmp_path / "logs",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sec.db'}",
        log_level="DEBUG",
        retry_max_attempts=2,
        retry_base_delay_s=0.001,
        retry_max_delay_s=0.002,
        park_max_attempts=2,
        shutdown_timeout_s=2.0,
    )


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run with umask 000: the modes below must be set by execflow, not inherited."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
async def embedded(embedded_settings: Settings, open_umask: None) -> AsyncIterator[Services]:
    bus = InMemoryBus(QueueNames(embedded_settings.queue_prefix))
    with setup_logging(embedded_settings, "supervisor", bridge=False) as logs:
        async with open_services(embedded_settings, logs, bus=bus) as services:
            yield services


def fill(lifecycle_id: str, exec_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "type": "8", "clordid": lifecycle_id, "exec_id": exec_id, "ord_status": "2",
        "symbol": SYMBOL, "provider": "hand", "cum_qty": QTY, "avg_px": ASK,
        "last_qty": QTY, "last_px": ASK, "lp_order_id": "LP1", "side": "1", **changes,
    }  # fmt: skip


async def test_control_characters_in_every_report_field_never_forge_a_line(
    embedded: Services, embedded_settings: Settings
) -> None:
    async with Flow.running(embedded) as flow:
        cases = [
            (name, status, number)
            for name in TEXT_FIELDS
            for status in ("2", "8", "0")  # a fill (open), a reject (reject), an ack (ignore)
            for number in range(len(PAYLOADS))
        ]
        for name, status, number in cases:
            placed = await flow.intake.open_market(USER, SYMBOL, "BUY", "0.01")
            assert placed.accepted and placed.lifecycle_id, placed
            body = fill(placed.lifecycle_id, f"E-{name}-{status}-{number}", ord_status=status)
            body["reason"] = "venue says no" if status == "8" else None
            body = {k: v for k, v in body.items() if v is not None}
            body[name] = f"{body.get(name, '')}{PAYLOADS[number]}"
            await flow.raw(orjson.dumps(body))
        # a FIX message with the payload (SOH-free) in text fields, an unknown lifecycle,
        # a non-JSON body and a message id carrying the payload
        fix_payload = PAYLOAD.replace("|", "/")
        await flow.raw(
            f"8=FIX.4.4|35=8|11=L-unknown{fix_payload}|17=F1|39=8|58={fix_payload}".encode()
        )
        await flow.raw(fill(f"unknown{PAYLOAD}", "E-unknown").__repr__().encode())
        await embedded.bus.publish(
            embedded.queues.reports, orjson.dumps(fill(f"nope{PAYLOAD}", "E-id")),
            message_id=f"id{PAYLOAD}",
        )  # fmt: skip
        await flow.settle()
    embedded.logs.flush()
    report = check_dir(Path(embedded_settings.log_dir))
    assert not report.problems, report.problems[:5]
    events = report.all_events()
    assert not [e for e in events if e.tag == FORGED_TAG or e.logger == "provider.forged"]
    # the payload did reach the logs, escaped, as field values (so the test tests something)
    carrying = {
        payload: {e.tag for e in events if any(payload in str(v) for v in e.fields.values())}
        for payload in PAYLOADS
    }
    assert "DISPATCH:RECEIVED" in carrying[PAYLOAD]  # the message id header
    through = carrying[ACCEPTED_PAYLOAD]
    assert {"DISPATCH:ROUTED", "DISPATCH:DLQ", "REJECT:SUCCESS", "DBWRITER:SUCCESS"} <= through
    assert any(tag.startswith("OPEN:") for tag in through), through
    # Free text and ids keep their control characters (escaped in every line above);
    # only fields with a grammar (status, side, type, time) refuse them as malformed.
    malformed = {
        str(e.fields.get("detail", "")).split(":")[0]
        for e in events
        if e.tag == "DISPATCH:DLQ" and e.fields.get("reason") == "malformed_report"
    }
    assert {"ord_status", "side", "type", "transact_time"} <= malformed, malformed
    assert not {"reason", "exec_id", "provider", "lp_order_id", "symbol"} & malformed


async def test_log_files_are_0640_and_the_directory_0750(
    embedded: Services, embedded_settings: Settings
) -> None:
    async with Flow.running(embedded) as flow:
        placed = await flow.intake.open_market(USER, SYMBOL, "BUY", "0.01")
        assert placed.lifecycle_id
        await flow.raw(orjson.dumps(fill(placed.lifecycle_id, "E-mode")))
        await flow.raw(b"not a report")
        await flow.settle()
    embedded.logs.flush()
    directory_mode, modes = await asyncio.to_thread(_modes, Path(embedded_settings.log_dir))
    assert directory_mode == oct(0o750)
    assert {"dispatcher.log", "worker_open.log", "provider_errors.log"} <= set(modes)
    assert set(modes.values()) == {oct(0o640)}, modes


def _modes(directory: Path) -> tuple[str, dict[str, str]]:
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    return oct(stat.S_IMODE(directory.stat().st_mode)), {
        p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files
    }


# -- binds ------------------------------------------------------------------------------------


def _bound(server: MetricsServer) -> tuple[str, str]:
    with urllib.request.urlopen(f"http://{server.host}:{server.port}/healthz", timeout=5) as r:
        health = r.read().decode()
    with urllib.request.urlopen(f"http://{server.host}:{server.port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    return health, metrics


def test_metrics_and_health_bind_to_loopback_unless_configured() -> None:
    settings = Settings()
    assert settings.metrics_host == "127.0.0.1"
    server = MetricsServer(Metrics("dispatcher"), settings.metrics_host, 0).start()
    try:
        assert server.host == "127.0.0.1"
        health, metrics = _bound(server)
        assert '"status"' in health and "execflow_" in metrics
        # not reachable on another local address of the host
        others = {
            info[4][0]
            for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
            if not str(info[4][0]).startswith("127.")
        }
        for address in others:
            with pytest.raises(OSError):
                socket.create_connection((str(address), server.port), timeout=1).close()
    finally:
        server.stop()
    configured = Settings(metrics_host="0.0.0.0")
    server = MetricsServer(Metrics("dispatcher"), configured.metrics_host, 0).start()
    try:
        assert server.host == "0.0.0.0"
    finally:
        server.stop()


# -- nothing evaluated or unpickled ---------------------------------------------------------------

_DANGEROUS = {
    "pickle": re.compile(r"\b(c?pickle|dill|shelve|marshal)\b"),
    "eval": re.compile(r"(?<![\w.])eval\s*\("),
    "exec": re.compile(r"(?<![\w.])exec\s*\("),
    "yaml.load": re.compile(r"yaml\.(unsafe_)?load\s*\((?![^)]*SafeLoader)"),
    "compile": re.compile(r"(?<![\w.])compile\s*\([^)]*['\"]exec['\"]"),
    "__import__": re.compile(r"__import__\s*\("),
    "jsonpickle": re.compile(r"jsonpickle"),
}


# The one allowed: the log line templates (``logs/formatting.py``) compile an f-string per
# field-key shape, from the spelled keys ([A-Za-z0-9_.] only) and constant spellings; no
# value, and no key as given, ever reaches the source (tests/logs/test_templates.py
# ``test_a_hostile_key_becomes_spelled_text_never_code``).
_ALLOWED = {("logs/formatting.py", "exec"), ("logs/formatting.py", "compile")}


def test_nothing_from_a_report_is_ever_evaluated_or_unpickled() -> None:
    sources = sorted(SRC.rglob("*.py"))
    assert len(sources) > 50
    found = [
        (str(path.relative_to(SRC)), what, f"{number}: {line.strip()}")
        for path in sources
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        for what, pattern in _DANGEROUS.items()
        if pattern.search(line) and not line.lstrip().startswith("#")
    ]
    assert [f for f in found if f[:2] not in _ALLOWED] == []
    # the allowance covers that one line, not a habit
    assert len([f for f in found if f[:2] in _ALLOWED]) <= len(_ALLOWED)


def test_the_dangerous_call_patterns_do_match_what_they_forbid() -> None:
    """The grep above would catch each construct (so an empty result means something)."""
    samples = {
        "pickle": "import pickle",
        "eval": "x = eval(body)",
        "exec": "exec(code)",
        "yaml.load": "yaml.load(text)",
        "compile": "compile(src, 'f', 'exec')",
        "__import__": "__import__('os')",
        "jsonpickle": "import jsonpickle",
    }
    for what, sample in samples.items():
        assert _DANGEROUS[what].search(sample), what
    assert not _DANGEROUS["yaml.load"].search("yaml.load(text, Loader=yaml.SafeLoader)")
    assert not _DANGEROUS["eval"].search("self.evaluate(x)")


# -- passwords on a distributed run ----------------------------------------------------------------

EXECFLOW = [sys.executable, "-c", "from execflow.cli.app import main; main()"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def rabbit_user() -> Iterator[tuple[str, str]]:
    """A dedicated RabbitMQ user with a distinctive password, deleted at the end."""
    from tests.services import need_service

    need_service("rabbitmq")
    user = f"efsec{uuid.uuid4().hex[:8]}"
    password = f"Pw{uuid.uuid4().hex}"
    ctl = ["rabbitmqctl", "-q"]
    subprocess.run([*ctl, "add_user", user, password], check=True, capture_output=True)
    try:
        subprocess.run(
            [*ctl, "set_permissions", "-p", "/", user, ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )
        yield user, password
    finally:
        subprocess.run([*ctl, "delete_user", user], check=False, capture_output=True)


@pytest.fixture
async def secret_pg() -> AsyncIterator[tuple[str, str]]:
    """A fresh PostgreSQL database reached through a URL carrying a password (trust auth)."""
    from tests.backends.conftest import fresh_pg_database
    from tests.services import need_service

    need_service("postgresql")
    need_service("redis")
    password = f"PgPw{uuid.uuid4().hex}"
    async with fresh_pg_database() as url:
        yield url.replace("://postgres@", f"://postgres:{password}@"), password


@pytest.mark.integration
async def test_passwords_reach_no_log_line_metric_or_dlq_entry(
    tmp_path: Path, rabbit_user: tuple[str, str], secret_pg: tuple[str, str]
) -> None:
    from tests.backends.conftest import delete_queues

    user, amqp_password = rabbit_user
    pg_url, pg_password = secret_pg
    tag = uuid.uuid4().hex[:10]
    prefix = f"efsec.{tag}"
    port = free_port()
    env = {
        **os.environ,
        "EXECFLOW_BROKER_URL": f"amqp://{user}:{amqp_password}@127.0.0.1:5672/",
        "EXECFLOW_STATE_URL": f"redis://127.0.0.1:6379/15?key_prefix=efsec{tag}",
        "EXECFLOW_DATABASE_URL": pg_url,
        "EXECFLOW_QUEUE_PREFIX": prefix,
        "EXECFLOW_LOG_DIR": str(tmp_path / "logs"),
        "EXECFLOW_LOG_LEVEL": "DEBUG",
        "EXECFLOW_SHUTDOWN_TIMEOUT_S": "2",
        "EXECFLOW_METRICS_PORT": str(port),
        "EXECFLOW_RETRY_MAX_ATTEMPTS": "2",
        "EXECFLOW_RETRY_BASE_DELAY_S": "0.01",
    }
    secrets = (amqp_password, pg_password)
    dispatcher = await asyncio.create_subprocess_exec(
        *EXECFLOW, "run", "dispatcher", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        log = tmp_path / "logs" / "dispatcher.log"
        async with asyncio.timeout(60):
            while "[DISPATCH:STARTED]" not in (log.read_text() if log.exists() else ""):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        publish = (
            "import asyncio,sys\n"
            "from execflow.backends.rabbitmq import RabbitMQBus\n"
            "from execflow.backends.bus import QueueNames\n"
            "async def main():\n"
            f"    bus = RabbitMQBus({env['EXECFLOW_BROKER_URL']!r}, QueueNames({prefix!r}))\n"
            "    await bus.connect()\n"
            "    for body in sys.stdin.buffer.read().split(b'\\n--\\n'):\n"
            "        await bus.publish(bus.queues.reports, body)\n"
            "    await bus.close()\n"
            "asyncio.run(main())\n"
        )
        bodies = [
            orjson.dumps(fill("unknown-lifecycle", "E1")),
            b"garbage",
            orjson.dumps({"type": "8", "exec_id": "E3", "ord_status": "2"}),
        ]
        done = await asyncio.to_thread(
            subprocess.run,
            [*EXECFLOW[:1], "-c", publish], input=b"\n--\n".join(bodies),
            env=env, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        async with asyncio.timeout(60):
            while log.read_text().count("[DISPATCH:DLQ]") < len(bodies):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        metrics = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        )
        health = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
        )
    finally:
        if dispatcher.returncode is None:
            dispatcher.terminate()
        out, err = await dispatcher.communicate()
    dlq = await asyncio.to_thread(
        subprocess.run,
        [*EXECFLOW, "dlq", "list", "--json"], env=env, capture_output=True, timeout=60,
        check=False,
    )  # fmt: skip
    await delete_queues({*QueueNames(prefix).all(), f"{prefix}.dlq"})
    assert dlq.returncode == 0, dlq.stderr.decode()[-2000:]
    listed = dlq.stdout.decode()
    assert listed.count('"reason"') >= 1 and "unknown_lifecycle_id" in listed
    start = next(line for line in log.read_text().splitlines() if "[PROCESS:START]" in line)
    assert f"amqp://{user}:***@" in start and "postgres:***@" in start
    assert b"execflow_dlq_total" in metrics
    texts = {
        "metrics": metrics.decode(),
        "health": health.decode(),
        "dlq list": listed,
        "stdout": out.decode(),
        "stderr": err.decode(),
        **{p.name: p.read_text() for p in (tmp_path / "logs").iterdir() if p.is_file()},
    }
    leaks = {name for name, text in texts.items() for s in secrets if s in text}
    assert leaks == set()
    report = check_dir(tmp_path / "logs")
    assert not report.problems, report.problems[:5]
