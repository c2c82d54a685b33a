"""Fixtures shared by several test folders: the throwaway Redis Cluster (``clusters.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from execflow.settings import require_services
from tests.clusters import RedisClusterServers
from tests.faults.services import ServerUnavailable


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A 3-master Redis Cluster with one replica each, for the whole session.

    Skips when ``redis-server`` / ``redis-cli`` are missing or the cluster does not come
    up, unless ``EXECFLOW_REQUIRE_SERVICES=1`` (then it fails).
    """
    try:
        cluster = RedisClusterServers.start()
    except (ServerUnavailable, OSError, TimeoutError) as error:
        message = f"cannot start a throwaway Redis Cluster: {error}"
        if require_services():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield cluster
    finally:
        cluster.close()
