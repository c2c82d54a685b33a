"""The deferred database's start-up check answers as the database does (``backends.deferred``).

It connects with asyncpg in a child interpreter: a database that answers is True, and a
wrong database name or a port nobody listens on is False (``connect`` then connects the
real database, which raises the usual error).
"""

from __future__ import annotations

import socket

import pytest

from execflow.backends.database import Database
from execflow.backends.deferred import DeferredDatabase
from tests.services import POSTGRES_URL, need_service

pytestmark = pytest.mark.integration


class _Built(Exception):
    """Raised by the build of the real database: the check did not answer."""


def _never_built() -> Database:
    raise _Built


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_database_that_answers_is_not_connected_at_start() -> None:
    need_service("postgresql")
    database = DeferredDatabase(POSTGRES_URL, _never_built)
    await database.connect()
    assert not database.connected


@pytest.mark.parametrize(
    "url",
    [
        POSTGRES_URL.rsplit("/", 1)[0] + "/no_such_database_here",
        f"postgresql+asyncpg://postgres@127.0.0.1:{_free_port()}/test",
    ],
)
async def test_a_database_that_does_not_answer_is_connected_at_once(url: str) -> None:
    need_service("postgresql")
    database = DeferredDatabase(url, _never_built)
    with pytest.raises(_Built):
        await database.connect()
