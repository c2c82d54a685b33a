"""Stop, kill, freeze and (always) restore the local RabbitMQ, Redis and PostgreSQL.

The start commands are the CI's own (``.ci/run``). ``ensure_services`` is idempotent:
it resumes a frozen server, starts one that does not answer and waits until all three
accept connections (RabbitMQ: ``rabbitmqctl await_startup`` too).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.faults.harness import port_answers

__all__ = [
    "ensure_services",
    "pg_cluster",
    "pg_start",
    "pg_stop",
    "rabbit_hard_kill",
    "rabbit_pids",
    "rabbit_start",
    "rabbit_start_app",
    "rabbit_stop_app",
    "redis_pid",
    "redis_restart_empty",
    "redis_start",
    "resume",
]

REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip
_WAIT_S = 120.0


def _run(*argv: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout_s, check=False
    )


def _wait_port(port: int, up: bool, timeout_s: float = _WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while port_answers(port) != up:
        if time.monotonic() > deadline:
            raise TimeoutError(f"port {port} still {'down' if up else 'up'} after {timeout_s}s")
        time.sleep(0.2)


def _pids(pattern: str) -> list[int]:
    found = _run("pgrep", "-f", pattern)
    return [int(p) for p in found.stdout.split()]


# -- RabbitMQ ---------------------------------------------------------------------------------


def rabbit_pids() -> list[int]:
    """The Erlang VM(s) of the broker."""
    return _pids("beam.smp.*rabbit")


def rabbit_stop_app() -> None:
    """``rabbitmqctl stop_app``: the node stays, the broker application stops."""
    _run("rabbitmqctl", "stop_app")
    _wait_port(5672, up=False, timeout_s=60)


def rabbit_start_app() -> None:
    """``rabbitmqctl start_app`` and wait until AMQP answers."""
    _run("rabbitmqctl", "start_app")
    _run("rabbitmqctl", "await_startup")
    _wait_port(5672, up=True)


def rabbit_hard_kill() -> None:
    """SIGKILL the broker's Erlang VM (no clean shutdown)."""
    for pid in rabbit_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_port(5672, up=False, timeout_s=30)


def rabbit_start() -> None:
    """``rabbitmq-server -detached``, then wait until it serves AMQP."""
    _run("rabbitmq-server", "-detached")
    _wait_port(5672, up=True)
    _run("rabbitmqctl", "await_startup")


# -- Redis ------------------------------------------------------------------------------------


def redis_pid() -> int | None:
    """The pid of the redis-server on 6379."""
    pids = _pids("redis-server.*6379")
    return pids[0] if pids else None


def redis_start() -> None:
    """Start Redis exactly as CI does (no persistence) and wait for it."""
    Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
    Path("/var/log/redis").mkdir(parents=True, exist_ok=True)
    _run(*REDIS_START)
    _wait_port(6379, up=True, timeout_s=30)


def redis_restart_empty(down_s: float) -> None:
    """``redis-cli shutdown nosave``, stay down ``down_s``, start again: every key is gone."""
    _run("redis-cli", "shutdown", "nosave")
    _wait_port(6379, up=False, timeout_s=30)
    time.sleep(down_s)
    redis_start()


# -- PostgreSQL -------------------------------------------------------------------------------


def pg_cluster() -> tuple[str, str]:
    """(version, name) of the local cluster."""
    versions = sorted(os.listdir("/etc/postgresql"))
    return versions[-1], "main"


def pg_stop() -> None:
    """Stop the cluster (fast shutdown)."""
    version, name = pg_cluster()
    _run("pg_ctlcluster", "--skip-systemctl-redirect", version, name, "stop")
    _wait_port(5432, up=False, timeout_s=60)


def pg_start() -> None:
    """Start the cluster and wait for it."""
    version, name = pg_cluster()
    _run("pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start")
    _wait_port(5432, up=True)


# -- freezing ---------------------------------------------------------------------------------


def resume(pids: list[int]) -> None:
    """SIGCONT (harmless when not stopped)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def ensure_services() -> None:
    """Resume, start and wait for RabbitMQ, Redis and PostgreSQL (idempotent)."""
    resume(rabbit_pids())
    pid = redis_pid()
    if pid is not None:
        resume([pid])
    if not port_answers(5432):
        pg_start()
    if not port_answers(6379):
        redis_start()
    if not port_answers(5672):
        if rabbit_pids():
            rabbit_start_app()
        if not port_answers(5672):
            rabbit_start()
    for port in (5672, 6379, 5432):
        _wait_port(port, up=True)
