"""Build each backend from its settings URL; an unknown scheme is a startup error."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from execflow.backends.bus import Bus, QueueNames
from execflow.backends.database import Database
from execflow.backends.feed import EventFeed
from execflow.backends.state import StateStore
from execflow.errors import ConfigError
from execflow.logs.masking import mask_url
from execflow.settings import Settings

__all__ = ["make_bus", "make_database", "make_state_store"]


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def make_bus(settings: Settings) -> Bus:
    """``memory://`` → ``InMemoryBus``; ``amqp://`` / ``amqps://`` → ``RabbitMQBus``."""
    scheme = _scheme(settings.broker_url)
    names = QueueNames(settings.queue_prefix)
    if scheme == "memory":
        from execflow.backends.memory_bus import InMemoryBus

        return InMemoryBus(names, prefetch=settings.prefetch)
    if scheme in {"amqp", "amqps"}:
        from execflow.backends.rabbitmq import RabbitMQBus

        return RabbitMQBus(
            settings.broker_url,
            names,
            prefetch=settings.prefetch,
            ack_delay_s=settings.ack_delay_ms / 1000,
            heartbeat_s=settings.amqp_heartbeat_s,
            queue_type=settings.queue_type,
            delivery_limit=settings.queue_delivery_limit,
        )
    raise ConfigError(
        "broker_url (EXECFLOW_BROKER_URL): unsupported scheme in "
        f"{mask_url(settings.broker_url)!r}; expected memory:// or amqp://",
        setting="broker_url",
    )


def make_feed(settings: Settings) -> EventFeed:
    """The event feed on the broker: in-memory for ``memory://``, else a fanout exchange."""
    if _scheme(settings.broker_url) == "memory":
        from execflow.backends.feed import InMemoryFeed

        return InMemoryFeed()
    from execflow.backends.rabbitmq_feed import RabbitMQFeed

    return RabbitMQFeed(settings.broker_url, settings.queue_prefix, settings.amqp_heartbeat_s)


def make_state_store(settings: Settings) -> StateStore:
    """``memory://`` → in-memory; ``redis://``, ``rediss://``, ``unix://`` → Redis;
    ``redis+cluster://h1:p1,h2:p2/`` → Redis Cluster (``redis_cluster_url.py``).

    A ``key_prefix`` query parameter on the Redis URL changes the key prefix (default ``ef``).
    """
    scheme = _scheme(settings.state_url)
    if scheme == "memory":
        from execflow.backends.memory_state import InMemoryStateStore

        return InMemoryStateStore()
    if scheme in {"redis", "rediss", "unix"}:
        from execflow.backends.redis_state import RedisStateStore

        url, key_prefix = _split_key_prefix(settings.state_url)
        return RedisStateStore(
            url,
            pool_size=settings.redis_pool_size,
            timeout_s=settings.redis_timeout_s,
            key_prefix=key_prefix,
        )
    if scheme == "redis+cluster":
        from execflow.backends.redis_cluster_url import make_cluster_store

        return make_cluster_store(settings)
    raise ConfigError(
        f"state_url (EXECFLOW_STATE_URL): unsupported scheme in {mask_url(settings.state_url)!r};"
        " expected memory://, redis:// or redis+cluster://",
        setting="state_url",
    )


def make_database(settings: Settings) -> Database:
    """``sqlite+aiosqlite://`` or ``postgresql+asyncpg://`` → ``SqlDatabase``."""
    scheme = _scheme(settings.database_url)
    if scheme in {"sqlite+aiosqlite", "postgresql+asyncpg"}:
        from execflow.backends.sql import SqlDatabase

        return SqlDatabase(
            settings.database_url,
            pool_size=settings.db_pool_size,
            batch_size=settings.db_batch_size,
        )
    raise ConfigError(
        f"database_url (EXECFLOW_DATABASE_URL): unsupported scheme in "
        f"{mask_url(settings.database_url)!r}; expected sqlite+aiosqlite:// or postgresql+asyncpg://",
        setting="database_url",
    )


def _split_key_prefix(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = "ef"
    kept = []
    for key, value in query:
        if key == "key_prefix" and value:
            prefix = value
        else:
            kept.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), prefix
