"""``DeferredDatabase``: checked at start, connected (and migrated) on first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from execflow.backends.database import Database, EventRecord
from execflow.backends.deferred import DeferredDatabase
from execflow.backends.sql import SqlDatabase
from execflow.errors import DatabaseError
from tests.services import POSTGRES_URL, need_service


class Builds:
    """A ``build`` callable that counts the real databases it made."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[SqlDatabase] = []

    def __call__(self) -> Database:
        database = SqlDatabase(self.url)
        self.made.append(database)
        return database


async def _migrated(path: Path) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    first = SqlDatabase(url)
    await first.connect()
    await first.insert_events(
        [EventRecord("ev-1", "o1", "live:6", "ORDER_OPENED", {"n": 1}, exec_id="x-1")]
    )
    await first.close()
    return url


async def test_a_database_that_answers_is_connected_on_first_use(tmp_path: Path) -> None:
    url = await _migrated(tmp_path / "db.sqlite")
    builds = Builds(url)
    deferred = DeferredDatabase(url, builds)
    await deferred.connect()
    assert builds.made == [] and not deferred.connected
    assert await deferred.count_events() == 1
    assert [e.event_id async for e in deferred.iter_events()] == ["ev-1"]
    assert [e.event_id for e in await deferred.events_for_order("o1")] == ["ev-1"]
    assert await deferred.list_accounts() == []
    assert len(builds.made) == 1 and deferred.connected
    await deferred.close()
    assert not deferred.connected


async def test_a_missing_file_is_created_and_migrated_at_start_as_before(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new' / 'db.sqlite'}"
    builds = Builds(url)
    deferred = DeferredDatabase(url, builds)
    await deferred.connect()
    try:
        assert len(builds.made) == 1 and deferred.connected
        assert await deferred.schema_version() is not None
    finally:
        await deferred.close()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://execflow:pw@127.0.0.1:1/x",  # nothing listens on port 1
        "postgresql+asyncpg://execflow:pw@127.0.0.1:1/x?ssl=require",  # not plain: no check
    ],
)
async def test_a_database_that_does_not_answer_fails_at_start(url: str) -> None:
    deferred = DeferredDatabase(url, Builds(url))
    with pytest.raises(DatabaseError):
        await deferred.connect()
    assert not deferred.connected


class _Built(Exception):
    """Raised by a build: the start-up check did not answer, the real one was asked for."""


def _never_built() -> Database:
    raise _Built


@pytest.mark.integration
async def test_a_postgresql_database_that_answers_is_not_connected_at_start() -> None:
    # the check connects with asyncpg in a child interpreter (not loaded in this process)
    need_service("postgresql")
    deferred = DeferredDatabase(POSTGRES_URL, _never_built)
    await deferred.connect()
    assert not deferred.connected


@pytest.mark.integration
async def test_a_wrong_postgresql_database_name_is_connected_at_start() -> None:
    need_service("postgresql")
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(_Built):
        await DeferredDatabase(url, _never_built).connect()
