"""``shipped_head``: the newest revision read from the scripts' text, as Alembic names it.

``SqlDatabase.connect`` skips loading Alembic when the database already records that
revision, so a wrong answer here would leave a schema unmigrated: these tests hold the
text reading to Alembic's own answer and check that an older schema is still upgraded.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

from execflow.backends.migrations import MIGRATIONS_DIR, shipped_head
from execflow.backends.sql import SqlDatabase, _load_scripts, _upgrade


def _alembic_head() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def _script(directory: Path, revision: str, down: str) -> None:
    (directory / f"{revision}.py").write_text(
        f'"""A revision."""\n\nrevision = "{revision}"\ndown_revision: str | None = {down}\n'
    )


def test_the_shipped_head_is_alembics() -> None:
    assert shipped_head() == _alembic_head() is not None


def test_a_linear_chain_ends_at_its_newest_script(tmp_path: Path) -> None:
    _script(tmp_path, "a1", "None")
    _script(tmp_path, "b2", '"a1"')
    _script(tmp_path, "c3", "'b2'")
    assert shipped_head(tmp_path) == "c3"


def test_no_head_is_claimed_when_it_is_not_plain(tmp_path: Path) -> None:
    _script(tmp_path, "a1", "None")
    _script(tmp_path, "b2", '"a1"')
    _script(tmp_path, "b3", '"a1"')  # two branches: two heads
    assert shipped_head(tmp_path) is None
    merged = tmp_path / "merged"
    merged.mkdir()
    _script(merged, "a1", "None")
    _script(merged, "m2", '("a1", "x")')  # a merge: a tuple, left to Alembic
    assert shipped_head(merged) is None
    assert shipped_head(tmp_path / "empty") is None


async def test_an_older_schema_is_still_upgraded(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    engine = create_async_engine(url)
    try:
        config, script = await asyncio.to_thread(_load_scripts)
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, config, script, "0002")
    finally:
        await engine.dispose()
    database = SqlDatabase(url)
    await database.connect()
    try:
        assert await database.schema_version() == shipped_head()
        assert await database.count_events() == 0  # the tables are there
    finally:
        await database.close()
