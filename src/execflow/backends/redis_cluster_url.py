"""``redis+cluster://`` state URLs: startup nodes and options, or a startup error.

``redis+cluster://[:password@]host1:port1,host2:port2/?key_prefix=ef&copies=16&wait_replicas=1``

* at least one ``host:port`` (more let the client start while one node is down);
* ``key_prefix`` (default ``ef``) as on one server;
* ``copies`` (default 16): copies of the quotes and instrument configs, spread over
  the masters (docs/cluster.md);
* ``wait_replicas`` (default 1) and ``wait_timeout_ms`` (default 500): replicas a commit
  waits for (``WAIT``), 0 to not wait;
* ``retry_window_s`` (default 3 times ``redis_timeout_s``): how long a failover is retried
  before a call fails with ``StoreError``.

Anything else (no node, a port that is not a number, an unknown option) is a
``ConfigError`` naming the setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote

from execflow.errors import ConfigError
from execflow.logs.masking import mask_url
from execflow.settings import Settings

if TYPE_CHECKING:
    from execflow.backends.redis_cluster_state import RedisClusterStateStore

__all__ = ["ClusterUrl", "make_cluster_store", "parse_cluster_url"]

SCHEME = "redis+cluster://"
_INT_OPTIONS = ("copies", "wait_replicas", "wait_timeout_ms")


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """What a ``redis+cluster://`` URL says."""

    nodes: tuple[tuple[str, int], ...]
    password: str | None = None
    key_prefix: str = "ef"
    options: dict[str, float] = field(default_factory=dict)


def _bad(url: str, why: str) -> ConfigError:
    return ConfigError(
        f"state_url (EXECFLOW_STATE_URL): {why} in {mask_url(url)!r}; expected "
        "redis+cluster://host1:port1,host2:port2/?key_prefix=ef",
        setting="state_url",
    )


def _node(url: str, text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(url, f"node {text!r} is not host:port")
    return host.strip("[]"), int(port)


def _option(url: str, key: str, value: str) -> float:
    if key not in (*_INT_OPTIONS, "retry_window_s"):
        raise _bad(url, f"unknown option {key!r}")
    try:
        number = int(value) if key in _INT_OPTIONS else float(value)
    except ValueError:
        raise _bad(url, f"{key}={value!r} is not a number") from None
    if number < 0 or (key == "copies" and number < 1):
        raise _bad(url, f"{key}={value!r} is out of range")
    return number


def parse_cluster_url(url: str) -> ClusterUrl:
    """The startup nodes and options of ``url``; ``ConfigError`` naming the setting otherwise."""
    if not url.startswith(SCHEME):
        raise _bad(url, "not a redis+cluster:// URL")
    rest = url[len(SCHEME) :]
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    if "?" in netloc:
        netloc, _, query = netloc.partition("?")
    if path:
        raise _bad(url, "a cluster has no database number (only db 0)")
    credentials, at, hosts = netloc.rpartition("@")
    password = (unquote(credentials.partition(":")[2]) or None) if at else None
    if not hosts:
        raise _bad(url, "no startup node")
    nodes = tuple(_node(url, item) for item in hosts.split(",") if item.strip())
    if not nodes:
        raise _bad(url, "no startup node")
    key_prefix = "ef"
    options: dict[str, float] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "key_prefix":
            if not value:
                raise _bad(url, "empty key_prefix")
            key_prefix = value
        else:
            options[key] = _option(url, key, value)
    return ClusterUrl(nodes, password, key_prefix, options)


def make_cluster_store(settings: Settings) -> RedisClusterStateStore:
    """The Redis Cluster store of ``settings.state_url``."""
    from execflow.backends.redis_cluster_state import RedisClusterStateStore

    parsed = parse_cluster_url(settings.state_url)
    options = parsed.options
    return RedisClusterStateStore(
        parsed.nodes,
        url=settings.state_url,
        pool_size=settings.redis_pool_size,
        timeout_s=settings.redis_timeout_s,
        key_prefix=parsed.key_prefix,
        password=parsed.password,
        copies=int(options.get("copies", 16)),
        wait_replicas=int(options.get("wait_replicas", 1)),
        wait_timeout_ms=int(options.get("wait_timeout_ms", 500)),
        retry_window_s=options.get("retry_window_s"),
    )
