"""Real-server availability for integration tests: skip locally, fail in CI."""

from __future__ import annotations

import socket

import pytest

from execflow.settings import require_services

__all__ = ["AMQP_URL", "POSTGRES_URL", "REDIS_URL", "need_service"]

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/15"
POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

_PORTS = {"rabbitmq": 5672, "redis": 6379, "postgresql": 5432}


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def need_service(name: str) -> None:
    """Skip the test when ``name`` is down, or fail when EXECFLOW_REQUIRE_SERVICES=1."""
    port = _PORTS[name]
    if _answers(port):
        return
    message = f"{name} is not answering on 127.0.0.1:{port}"
    if require_services():
        pytest.fail(message + " and EXECFLOW_REQUIRE_SERVICES=1")
    pytest.skip(message)
