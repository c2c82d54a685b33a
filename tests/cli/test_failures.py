"""A server that cannot be reached: one stderr line, exit code 3, ``PROCESS:FAILED`` logged.

Every command that touches a server is run with one server at a closed port (the others
embedded), and the broker commands again with a wrong password on the real RabbitMQ. The
command tables are checked against the Typer app (``leaf_commands``): a new command
fails ``test_every_command_is_classified`` until it is listed here.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from execflow.cli.app import app
from execflow.cli.failures import EXIT_UNREACHABLE, FailureBoundary
from execflow.domain.routing import Worker
from tests.backends.conftest import delete_queues, unique
from tests.cli.commands import leaf_commands
from tests.faults.services import port_answers
from tests.services import AMQP_URL, REDIS_URL, need_service

PASSWORD = "s3cr3t-pw"
REPO = Path(__file__).resolve().parents[2]
SEED = str(REPO / "examples" / "seed.toml")

BROKER, STATE, DATABASE = "broker", "state store", "database"
_ENV = {
    BROKER: "EXECFLOW_BROKER_URL",
    STATE: "EXECFLOW_STATE_URL",
    DATABASE: "EXECFLOW_DATABASE_URL",
}
CLOSED_PORT = {
    BROKER: f"amqp://guest:{PASSWORD}@127.0.0.1:1/",
    STATE: f"redis://:{PASSWORD}@127.0.0.1:1/0",
    DATABASE: f"postgresql+asyncpg://execflow:{PASSWORD}@127.0.0.1:1/x",
}
WRONG_PASSWORD = f"amqp://guest:{PASSWORD}@127.0.0.1:5672/"
ALL = (BROKER, STATE, DATABASE)


@dataclass(frozen=True)
class Case:
    """One command line, the component whose log it writes, and the servers it uses."""

    command: str
    args: tuple[str, ...]
    component: str
    servers: tuple[str, ...] = ALL
    real_servers: bool = False
    """The servers not under test must be real ones (the command refuses memory://)."""
    extra_env: tuple[tuple[str, str], ...] = ()
    """Settings the command needs besides the servers'."""
    log_file: str = ""
    """The component's log file when not ``{component}.log``."""

    @property
    def argv(self) -> list[str]:
        return [*self.command.split(), *self.args]


_ORDER_ARGS = {
    "open": ("live:6", "EURUSD", "BUY", "0.10"),
    "pending": ("live:6", "EURUSD", "BUY_LIMIT", "0.10", "1.08000"),
    "modify": ("3163458366000", "1.08100"),
    "cancel": ("3163458366000",),
    "close": ("3163458366000",),
    "sl": ("3163458366000", "1.08200"),
    "tp": ("3163458366000", "1.09500"),
}
SERVER_CASES: tuple[Case, ...] = (
    Case("run dispatcher", (), "dispatcher"),
    *(Case("run worker", (w.value,), f"worker_{w.value}") for w in Worker),
    Case("run db-writer", (), "db_writer"),
    *(Case(f"order {name}", args, "intake") for name, args in _ORDER_ARGS.items()),
    Case("dlq list", (), "supervisor"),
    Case("dlq replay", (), "supervisor"),
    Case("state rebuild", (), "supervisor"),
    Case("seed", (SEED,), "supervisor"),
    Case("reconcile", (), "supervisor", (STATE, DATABASE)),
    Case("simulate", (), "simulator"),
    Case("orders stuck", (), "supervisor"),
    Case("order show", ("3163458366000",), "supervisor"),
    Case("account show", ("live:6",), "supervisor"),
    Case("orders list", (), "supervisor"),
    Case(
        "order resolve",
        ("3163458366000", "--as", "rejected", "--reason", "LP: never received"),
        "supervisor",
        real_servers=True,
    ),
    Case("audit verify", (), "supervisor", (DATABASE,)),
    Case("lp quality", (), "supervisor", (DATABASE,)),
    Case("run api", ("--port", "0"), "api"),
    Case("serve", ("--port", "0"), "api"),
    Case("api-key create", ("--scopes", "read", "--accounts", "live:6"), "api"),
    Case("api-key list", (), "api"),
    Case("api-key revoke", ("k_0123",), "api"),
    Case(
        "run lp-gateway",
        ("--lp", "x"),
        "lp_gateway",
        log_file="lp_gateway-x.log",
        extra_env=(
            ("EXECFLOW_LPS", '{"x": {"port": 1, "sender_comp_id": "A", "target_comp_id": "B"}}'),
        ),
    ),
)
# ``bench`` takes its servers as options, not settings, and keeps no log of its own.
BENCH = ("--embedded-reports", "10", "--distributed-reports", "10", "--relay-messages", "10")
NO_SERVER = {
    "version": "prints the version",
    "config": "prints the settings",
    "demo": "embedded: memory:// backends and a SQLite file in its run directory",
    "run all": "connects to nothing itself; each child is a `run` command covered here",
    **{f"logs {name}": "reads log files only" for name in (
        "check", "cleanup", "trace", "stats", "tail", "errors", "report"
    )},
}  # fmt: skip


def test_every_command_is_classified() -> None:
    covered = {case.command for case in SERVER_CASES} | set(NO_SERVER) | {"bench"}
    assert leaf_commands() == covered


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Embedded backends, logs under tmp_path; returns the log directory."""
    for name in list(os.environ):
        if name.startswith("EXECFLOW_"):
            monkeypatch.delenv(name)
    logs = tmp_path / "logs"
    monkeypatch.setenv("EXECFLOW_LOG_DIR", str(logs))
    monkeypatch.setenv("EXECFLOW_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("EXECFLOW_REDIS_TIMEOUT_S", "1")
    return logs


@pytest.fixture
def prefix() -> Iterator[str]:
    """A queue and key prefix of this test's own on the shared servers; its queues (if any
    were declared) are deleted after: a fixed prefix would meet queues of another type
    (classic, quorum) left there by older runs."""
    name = unique("failtest")
    try:
        yield name
    finally:
        if port_answers(5672):
            listed = subprocess.run(
                ["rabbitmqctl", "-q", "--no-table-headers", "list_queues", "name"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            queues = {q.strip() for q in listed.stdout.splitlines() if q.startswith(name + ".")}
            asyncio.run(delete_queues(queues))


def _log_text(logs: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(logs.glob("*.log")))


def check_failure(logs: Path, case: Case, server: str, code: int, stdout: str, stderr: str) -> None:
    """Exit 3, one stderr line naming the server, PROCESS:FAILED logged, no password."""
    assert code == 3, (code, stdout, stderr)
    assert stderr.count("\n") == 1 and stderr.endswith("\n"), stderr
    assert stderr.startswith(f"execflow: {server} unreachable or failing at "), stderr
    assert "Traceback" not in stderr
    for name in (case.log_file or f"{case.component}.log", "provider_errors.log"):
        lines = [
            line for line in (logs / name).read_text().splitlines() if "[PROCESS:FAILED]" in line
        ]
        assert len(lines) == 1, (name, lines)
        assert f'server="{server}"' in lines[0] or f"server={server}" in lines[0]
        assert "reason=server_unreachable" in lines[0] and "url=" in lines[0]
        assert "***@127.0.0.1" in lines[0]
    for text in (stdout, stderr, _log_text(logs)):
        assert PASSWORD not in text


def _invoke(argv: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("case", "server"),
    [(case, server) for case in SERVER_CASES for server in case.servers],
    ids=lambda v: v.argv[0] + "-" + "-".join(v.argv[1:2]) if isinstance(v, Case) else v,
)
def test_server_at_a_closed_port(
    env: Path, monkeypatch: pytest.MonkeyPatch, case: Case, server: str, prefix: str
) -> None:
    if case.real_servers:
        need_service("rabbitmq")
        need_service("redis")
        monkeypatch.setenv("EXECFLOW_BROKER_URL", AMQP_URL)
        monkeypatch.setenv("EXECFLOW_STATE_URL", f"{REDIS_URL}?key_prefix={prefix}")
        monkeypatch.setenv("EXECFLOW_QUEUE_PREFIX", prefix)
    for name, value in case.extra_env:
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(_ENV[server], CLOSED_PORT[server])
    code, stdout, stderr = _invoke(case.argv)
    check_failure(env, case, server, code, stdout, stderr)


@pytest.mark.integration
@pytest.mark.parametrize(
    "case",
    [case for case in SERVER_CASES if BROKER in case.servers],
    ids=lambda c: "-".join(c.argv[:3]),
)
def test_wrong_rabbitmq_password(
    env: Path, monkeypatch: pytest.MonkeyPatch, case: Case, prefix: str
) -> None:
    need_service("rabbitmq")
    if case.real_servers:
        need_service("redis")
        monkeypatch.setenv("EXECFLOW_STATE_URL", f"{REDIS_URL}?key_prefix={prefix}")
    for name, value in case.extra_env:
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("EXECFLOW_BROKER_URL", WRONG_PASSWORD)
    code, stdout, stderr = _invoke(case.argv)
    check_failure(env, case, BROKER, code, stdout, stderr)
    assert "ACCESS_REFUSED" in stderr


def test_bench_with_the_broker_at_a_closed_port(env: Path) -> None:
    code, stdout, stderr = _invoke(["bench", *BENCH, "--amqp-url", CLOSED_PORT[BROKER]])
    assert code == 3
    assert stderr.count("\n") == 1
    assert stderr.startswith("execflow: broker unreachable or failing at amqp://guest:***@")
    assert PASSWORD not in stdout + stderr


def _process(env: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EXECFLOW_")}
    environ.update(
        EXECFLOW_LOG_DIR=str(env),
        EXECFLOW_BROKER_URL=WRONG_PASSWORD,
        EXECFLOW_DATABASE_URL=f"sqlite+aiosqlite:///{env.parent / 'x.db'}",
    )
    code = "from execflow.cli.app import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.integration
def test_a_real_process_prints_one_line_and_exits_3(env: Path) -> None:
    need_service("rabbitmq")
    done = _process(env, "run", "dispatcher")
    check_failure(env, SERVER_CASES[0], BROKER, done.returncode, done.stdout, done.stderr)
    start = [line for line in (env / "dispatcher.log").read_text().splitlines()]
    assert "[PROCESS:START]" in start[0]


@pytest.mark.integration
def test_debug_shows_the_traceback_still_masked(env: Path) -> None:
    need_service("rabbitmq")
    done = _process(env, "--debug", "run", "dispatcher")
    assert done.returncode == 3
    assert done.stderr.startswith("Traceback (most recent call last):")
    assert "execflow.errors.BusError: cannot connect to RabbitMQ" in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith("execflow: broker unreachable or failing at amqp://guest:***@")
    assert PASSWORD not in done.stderr + done.stdout + _log_text(env)


def test_an_internal_error_is_one_line_exit_4_and_logged(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import execflow.cli.dlq as dlq_cli

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(dlq_cli, "list_dead_letters", broken)
    code, _stdout, stderr = _invoke(["dlq", "list"])
    assert code == 4
    assert stderr == "execflow: internal error: KeyError: 'boom'\n"
    failed = [
        line
        for line in (env / "provider_errors.log").read_text().splitlines()
        if "[PROCESS:FAILED]" in line
    ]
    assert len(failed) == 1
    assert "reason=internal_error" in failed[0] and "traceback=" in failed[0]


def test_a_bad_setting_is_one_line_exit_2(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECFLOW_BROKER_URL", f"kafka://u:{PASSWORD}@127.0.0.1:1/")
    code, stdout, stderr = _invoke(["dlq", "list"])
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("execflow: configuration error: ")
    assert "broker_url" in stderr and PASSWORD not in stdout + stderr


def test_an_outage_after_the_start_is_one_line_exit_3_with_the_configured_url(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import execflow.cli.dlq as dlq_cli
    from execflow.errors import DatabaseError

    async def lost(*_args: object, **_kwargs: object) -> None:
        # what SqlDatabase raises when the server goes away mid-query: no url field
        raise DatabaseError("query failed", error="ConnectionResetError()")

    monkeypatch.setattr(dlq_cli, "list_dead_letters", lost)
    code, stdout, stderr = _invoke(["dlq", "list"])
    assert code == 3 and stdout == ""
    assert stderr.count("\n") == 1
    assert stderr.startswith("execflow: database unreachable or failing at sqlite+aiosqlite:///")
    assert stderr.rstrip().endswith(": query failed (ConnectionResetError())")
    failed = [
        line
        for line in (env / "supervisor.log").read_text().splitlines()
        if "[PROCESS:FAILED]" in line
    ]
    assert len(failed) == 1 and "server=database" in failed[0].replace('"', "")


def _raising_pipe_app() -> typer.Typer:
    app = typer.Typer(cls=FailureBoundary)

    @app.command()
    def emit() -> None:
        raise BrokenPipeError(32, "Broken pipe")

    @app.command()
    def other() -> None:
        """A second command, so that ``emit`` is a subcommand as in the real app."""

    return app


@pytest.mark.parametrize("reader_left", [True, False])
def test_a_reader_that_left_is_not_a_server_failure(
    reader_left: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    read_end, write_end = os.pipe()
    if reader_left:  # `execflow ... | head` once head has exited
        os.close(read_end)
    with os.fdopen(write_end, "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        with pytest.raises(SystemExit) as ended:
            _raising_pipe_app()(["emit"])
        monkeypatch.undo()
    if not reader_left:
        os.close(read_end)
    err = capsys.readouterr().err
    if reader_left:
        # typer's own way: silent, exit code 1
        assert (ended.value.code, err) == (1, "")
    else:
        # a broken pipe that is not our output's is a server gone away
        assert ended.value.code == EXIT_UNREACHABLE
        assert "a server is unreachable: BrokenPipeError" in err
