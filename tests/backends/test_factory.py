"""Factories pick the backend from the URL scheme; unknown schemes stop startup."""

from __future__ import annotations

import pytest

from execflow.backends.factory import make_bus, make_database, make_state_store
from execflow.backends.memory_bus import InMemoryBus
from execflow.backends.memory_state import InMemoryStateStore
from execflow.backends.rabbitmq import RabbitMQBus
from execflow.backends.redis_state import RedisStateStore
from execflow.backends.sql import SqlDatabase
from execflow.errors import ConfigError
from execflow.settings import Settings


def test_defaults_are_embedded() -> None:
    settings = Settings()
    assert isinstance(make_bus(settings), InMemoryBus)
    assert isinstance(make_state_store(settings), InMemoryStateStore)
    database = make_database(settings)
    assert isinstance(database, SqlDatabase)
    assert database.dialect == "sqlite"


async def test_real_servers_by_scheme() -> None:
    settings = Settings(
        broker_url="amqp://u:p@rabbit:5672/",
        state_url="redis://cache:6379/0?key_prefix=efx",
        database_url="postgresql+asyncpg://u:p@db/execflow",
        queue_prefix="desk1",
    )
    bus = make_bus(settings)
    assert isinstance(bus, RabbitMQBus)
    assert bus.dlq_name == "desk1.dlq"
    store = make_state_store(settings)
    assert isinstance(store, RedisStateStore)
    assert store.account_key("live:6") == "efx:{live:6}:account"
    await store.close()
    database = make_database(settings)
    assert isinstance(database, SqlDatabase)
    assert database.dialect == "postgresql"


@pytest.mark.parametrize(
    ("field", "url", "setting"),
    [
        ("broker_url", "kafka://u:hidden@k:9092", "broker_url"),
        ("state_url", "memcached://m:11211", "state_url"),
        ("database_url", "mysql+aiomysql://u:hidden@db/x", "database_url"),
    ],
)
def test_unknown_scheme_names_the_setting(field: str, url: str, setting: str) -> None:
    # Settings validation refuses these too; the factory must hold even if it is bypassed.
    settings = Settings.model_construct(**{**Settings().model_dump(), field: url})
    build = {"broker_url": make_bus, "state_url": make_state_store, "database_url": make_database}
    with pytest.raises(ConfigError) as caught:
        build[field](settings)
    assert caught.value.fields["setting"] == setting
    assert f"EXECFLOW_{setting.upper()}" in str(caught.value)
    assert "hidden" not in str(caught.value)
