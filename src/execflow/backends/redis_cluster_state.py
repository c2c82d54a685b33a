"""Redis Cluster state store: the Redis store's keys and script, one hash slot per command.

The account's keys share the ``{<account_id>}`` hash tag, so the compare-and-set script
and every read of one account stay in one slot (docs/cluster.md lists every command).
What differs from one server:

* Quotes and instrument configs are read by every transition. Kept in one key each they
  would put a share of all traffic on one master, so each is written to ``copies``
  keys of their own hash tags (``ef:px:{~<n>}``, ``ef:instr:{<group>~<n>}:<symbol>``),
  spread over the masters, and a read takes one copy (the account's, or the next in
  turn). A write reaches every copy before it returns; copies can differ only while
  a write is in flight or after one failed half-way (``StoreError``; the next quote
  replaces it). The instrument configs' token (``TransitionReads.instruments_token``)
  has a copy beside each copy of the quotes (``ef:instr-token:{~<n>}``, the same hash
  tag, so a transition reads it with its quotes); ``put_instrument`` replaces every copy
  of it only after every copy of the config is written, so a reader that sees the new
  token finds the new config in whichever copy it reads. A ``put_instrument`` that
  failed half-way leaves the old token: readers may keep the old config until it is
  written again (the seed or rebuild that failed is run again).
* A commit and a lifecycle record are followed by ``WAIT`` on the same connection, on
  every write: the write reached the replicas before the store answers, so a master
  killed after the answer does not take the write with it. It waits for
  ``min(wait_replicas, replicas that master has)``; a master's replicas are learnt
  from its ``ROLE`` whenever a ``WAIT`` acknowledges fewer than ``wait_replicas``, and
  until then taken to be ``wait_replicas``. After such a write the node is asked again:
  if it no longer serves the slot (its ``ROLE`` says replica, or the other masters give
  the slot to another node: a master replaced while paused that has not heard so yet
  drops the write when it turns replica), the write is not an answer and is retried,
  reaching the successor once the old master answers ``MOVED``. Else the write stands
  on the replicas it reached, the master's replica count is recorded (a warning each
  time it changes: after a failover the promoted master has none until one rejoins)
  and the write is counted (``under_replicated_writes``). There is no time-based skip:
  a master known to have fewer replicas than wanted is asked again on every write.
* A read that finds an order or a lifecycle record absent is checked the same way
  before "absent" is answered: a replaced master that has not heard so yet answers
  from its old data (``_confirm_miss``). A read that finds a document is not
  checked: what is decided on it is written, and that write is checked (an old
  version fails the compare-and-set on the successor, and the caller reloads).
* MOVED / ASK are followed by redis-py; a failover (connection refused, ``CLUSTERDOWN``,
  ``MASTERDOWN``, ``TRYAGAIN``, ``READONLY`` from a demoted master) is retried with
  backoff until ``retry_window_s`` has passed, then raised as ``StoreError``. A commit
  retried after its reply was lost answers ``VersionConflict``; the caller reloads and
  finds its exec_id, as on one server.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from execflow.backends.redis_state import (
    _CAS_SCRIPT,
    RedisStateStore,
    _dump,
    _load,
    _quotes,
    _raise_conflict,
    _text,
)
from execflow.backends.state import Write, new_instruments_token
from execflow.errors import StoreError
from execflow.logs.masking import mask_url

__all__ = ["RedisClusterStateStore", "ReplacedMasterError", "replicas_in_role", "slot_owner"]

log = logging.getLogger("execflow.backends.redis_cluster_state")

T = TypeVar("T")

# What a failover or a resharding answers for a while; anything else is not retried.
_TRANSIENT: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    RedisClusterException,
    OSError,
)

# What ``_role_of`` answers for a node whose ``ROLE`` is not master.
_NOT_A_MASTER = -1


class ReplacedMasterError(RedisClusterException):
    """A write went to a master the rest of the cluster has replaced: retried elsewhere."""


def replicas_in_role(role: Sequence[Any]) -> int | None:
    """The online replicas a ``ROLE`` reply lists, or ``None`` when the node is not a master."""
    kind = _text(role[0])
    return len(role[2]) if kind == "master" else None


def slot_owner(view: Mapping[str, Mapping[str, Any]], slot: int) -> str | None:
    """The ``host:port`` serving ``slot`` in a parsed ``CLUSTER NODES`` reply, if any.

    A master flagged ``fail`` (or ``fail?``) is not counted: the others are replacing it.
    """
    for address, node in view.items():
        flags = str(node.get("flags", "")).split(",")
        if "master" not in flags or any(flag.startswith("fail") for flag in flags):
            continue
        for bounds in node.get("slots", ()):
            if int(bounds[0]) <= slot <= int(bounds[-1]):
                return address
    return None


class RedisClusterStateStore(RedisStateStore):
    """The ``StateStore`` port on a Redis Cluster (redis-py's ``RedisCluster``)."""

    def __init__(
        self,
        nodes: Sequence[tuple[str, int]],
        *,
        url: str,
        pool_size: int = 32,
        timeout_s: float = 5.0,
        key_prefix: str = "ef",
        retry_window_s: float | None = None,
        backoff_s: float = 0.05,
        copies: int = 16,
        wait_replicas: int = 1,
        wait_timeout_ms: int = 500,
        password: str | None = None,
    ) -> None:
        if not nodes:
            raise ValueError("a cluster needs at least one startup node")
        if copies < 1:
            raise ValueError(f"copies must be >= 1, got {copies}")
        self._nodes = list(nodes)
        self._password = password
        self._copies = copies
        self._wait_replicas = max(0, wait_replicas)
        self._wait_timeout_ms = max(1, wait_timeout_ms)
        self._retry_window_s = 3 * timeout_s if retry_window_s is None else retry_window_s
        self._turn = itertools.count()
        # each master's online replicas, learnt from its ROLE when a WAIT came back short
        self._replicas: dict[str, int] = {}
        # masters whose last write stood short of the replicas they have (lagging ones)
        self._lagging: set[str] = set()
        self.under_replicated_writes = 0
        super().__init__(
            url, pool_size=pool_size, timeout_s=timeout_s, key_prefix=key_prefix,
            backoff_s=backoff_s,
        )  # fmt: skip

    def _make_client(self, url: str, pool_size: int, timeout_s: float) -> Any:
        """A ``RedisCluster`` on the startup nodes; it follows MOVED / ASK itself."""
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self._nodes],
            password=self._password,
            max_connections=pool_size,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # a few quick tries inside redis-py (they refresh the slot map); the window
            # that outlasts a failover is ``_call``'s
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            require_full_coverage=False,
        )

    @property
    def replicas_by_node(self) -> Mapping[str, int]:
        """Each master's online replicas as its ``ROLE`` last gave them (``host:port``: count).

        A master is asked only after a ``WAIT`` acknowledged fewer than ``wait_replicas``:
        one never asked is absent (every write it took reached ``wait_replicas``).
        """
        return dict(self._replicas)

    # -- keys -------------------------------------------------------------------------------

    def price_key(self, copy: int) -> str:
        """Key of one copy of the prices hash."""
        return f"{self._prefix}:px:{{~{copy}}}"

    def instrument_copy_key(self, group: str, symbol: str, copy: int) -> str:
        """Key of one copy of an instrument config."""
        return f"{self._prefix}:instr:{{{group}~{copy}}}:{symbol}"

    def instruments_token_copy_key(self, copy: int) -> str:
        """Key of one copy of the instrument configs' token (the slot of ``price_key(copy)``)."""
        return f"{self._prefix}:instr-token:{{~{copy}}}"

    def _copy_of(self, account_id: str) -> int:
        return zlib.crc32(account_id.encode()) % self._copies

    def _next_copy(self) -> int:
        return next(self._turn) % self._copies

    # -- retries ----------------------------------------------------------------------------

    async def _walk(self, operation: str, do: Callable[[Any], Awaitable[T]]) -> T:
        """A SCAN walk on the cluster's own client, whose commands keep their socket
        timeout (``_make_client``), retried as any call."""
        return await self._call(operation, lambda: do(self._redis))

    async def _call(self, operation: str, do: Callable[[], Awaitable[T]]) -> T:
        """Run ``do``; retry a failover's errors until ``retry_window_s``; else ``StoreError``.

        No deadline of ours: the cluster's client keeps redis-py's socket timeouts, whose
        errors make it refresh its slot map (``_make_client``).
        """
        deadline = time.monotonic() + self._retry_window_s
        delay_s = self._backoff_s
        attempt = 0
        while True:
            attempt += 1
            try:
                return await do()
            except _TRANSIENT as exc:
                if time.monotonic() + delay_s > deadline:
                    raise StoreError(
                        f"Redis Cluster unavailable: {operation} failed after {attempt} "
                        f"attempts in {self._retry_window_s:g} s",
                        url=mask_url(self._url),
                        error=repr(exc),
                    ) from exc
                log.warning(
                    "redis cluster call failed; retrying: operation=%s attempt=%d error=%r",
                    operation,
                    attempt,
                    exc,
                    extra={"operation": operation, "attempt": attempt, "error": repr(exc)},
                )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 1.0)
            except RedisError as exc:
                raise StoreError(
                    f"Redis error during {operation}", url=mask_url(self._url), error=repr(exc)
                ) from exc

    # -- writes that wait for a replica -------------------------------------------------------

    async def _acked(self, key: str, command: tuple[Any, ...]) -> Any:
        """``command`` (on ``key``'s slot) then ``WAIT`` on the same node and connection.

        ``WAIT`` asks for ``min(wait_replicas, replicas the node has)``, so a master with
        no replica since a failover does not make every write pay the timeout; a write
        acknowledged by fewer than ``wait_replicas`` is checked (``_checked_short``), on
        every write, a master known to be short included.
        """
        node = self._redis.get_node_from_key(key)
        if self._wait_replicas == 0 or node is None:
            return await self._redis.execute_command(*command)
        replicas = min(self._wait_replicas, self._replicas.get(node.name, self._wait_replicas))
        pipe = self._redis.pipeline(transaction=False)
        pipe.execute_command(*command)
        pipe.execute_command("WAIT", replicas, self._wait_timeout_ms, target_nodes=node)
        result, acked = await pipe.execute()
        if int(acked) < self._wait_replicas:
            await self._checked_short(node, key, int(acked))
        elif self._lagging:
            self._lagging.discard(node.name)
        return result

    async def _checked_short(self, node: ClusterNode, key: str, acked: int) -> None:
        """After a write on fewer than ``wait_replicas``: the node's role and replicas again.

        A node that no longer serves ``key``'s slot (its own ``ROLE``, else the other
        masters' view) raises ``ReplacedMasterError``: what it took is dropped when it
        turns replica. A master keeps the write; its replica count is recorded.
        """
        replicas = await self._still_serving(node, key, "write")
        self.under_replicated_writes += 1
        self._record(node.name, replicas, acked)

    async def _still_serving(self, node: ClusterNode, key: str, what: str) -> int | None:
        """``node``'s online replicas by its ``ROLE`` (``None`` unanswered), once it is known
        to serve ``key``'s slot still; else ``ReplacedMasterError``.

        It no longer does when its own ``ROLE`` says replica, or the other masters give
        the slot to another node (``_serving_instead``): a master replaced while paused
        answers as a master until it hears so.
        """
        replicas = await self._role_of(node)
        owner = (
            "it is a replica now"
            if replicas == _NOT_A_MASTER
            else await self._serving_instead(node, key)
        )
        if owner is not None:
            log.warning(
                "%s on a master no longer the master of its slot: node=%s owner=%s",
                what,
                node.name,
                owner,
                extra={"node": node.name, "owner": owner, "what": what},
            )
            raise ReplacedMasterError(f"{node.name} was replaced ({owner})")
        return replicas

    def _record(self, node: str, replicas: int | None, acked: int) -> None:
        """A master's replicas as its ``ROLE`` gave them; a warning once per change.

        A master that keeps its replicas but whose write they did not acknowledge in
        ``wait_timeout_ms`` (they lag, or are paused) is warned about once until one of
        its writes reaches them all again.
        """
        before = self._replicas.get(node)
        if replicas is not None and replicas != before:
            self._replicas[node] = replicas
            self._lagging.discard(node)
            log.warning(
                "replicas of a master changed: node=%s replicas=%d was=%s wanted=%d "
                "acked=%d under_replicated_writes=%d",
                node,
                replicas,
                "unknown" if before is None else before,
                self._wait_replicas,
                acked,
                self.under_replicated_writes,
                extra={"node": node, "replicas": replicas, "acked": acked},
            )
        elif (
            before is not None
            and acked < min(self._wait_replicas, before)
            and node not in self._lagging
        ):
            self._lagging.add(node)
            log.warning(
                "write not on a lagging replica: node=%s replicas=%d acked=%d "
                "under_replicated_writes=%d",
                node,
                before,
                acked,
                self.under_replicated_writes,
                extra={"node": node, "replicas": before, "acked": acked},
            )

    async def _role_of(self, node: ClusterNode) -> int | None:
        """The node's online replicas by its ``ROLE``, ``_NOT_A_MASTER``, or ``None`` unanswered."""
        try:
            role = await self._redis.execute_command("ROLE", target_nodes=node)
        except (RedisError, OSError):
            return None  # the other masters' view decides
        replicas = replicas_in_role(role)
        return _NOT_A_MASTER if replicas is None else replicas

    async def _serving_instead(self, node: ClusterNode, key: str) -> str | None:
        """The node the other masters give ``key``'s slot to, when not ``node``; else ``None``.

        The first other master that answers ``CLUSTER NODES`` decides. None answering
        (or a cluster of one master) leaves ``node`` in charge: the write stands.
        """
        slot = self._redis.keyslot(key)
        for other in self._redis.get_primaries():
            if other.name == node.name:
                continue
            try:
                view = await self._redis.execute_command("CLUSTER NODES", target_nodes=other)
            except (RedisError, OSError):
                continue
            owner = slot_owner(view, slot)
            if owner is not None:
                return None if owner == node.name else owner
        return None

    async def commit(self, account_id: str, writes: Sequence[Write]) -> None:
        """The compare-and-set script on the account's slot, then ``WAIT`` for a replica."""
        keys, args = self._cas_call(account_id, writes)
        # EVAL, not EVALSHA: a promoted replica has an empty script cache
        command = ("EVAL", _CAS_SCRIPT, len(keys), *keys, *args)

        async def do() -> Any:
            return await self._acked(keys[0], command)

        _raise_conflict(writes, await self._call("commit", do))

    async def put_lifecycle(self, lifecycle_id: str, data: dict[str, Any]) -> bool:
        """Record if absent (SET NX), then ``WAIT`` for a replica."""
        key = self.lifecycle_key(lifecycle_id)
        raw = _dump(data)

        async def do() -> bool:
            return bool(await self._acked(key, ("SET", key, raw, "NX")))

        return await self._call("put_lifecycle", do)

    # -- reads whose "absent" is confirmed -------------------------------------------------

    def _read_node(self, key: str) -> ClusterNode | None:
        node: ClusterNode | None = self._redis.get_node_from_key(key)
        return node

    async def _confirm_miss(self, node: ClusterNode | None, key: str) -> None:
        """An empty read is an answer only from a node that still serves ``key``'s slot.

        A master replaced while paused answers as a master, from its old data, until it
        hears it was replaced: a lifecycle record or an order written on its successor
        meanwhile reads as absent there, and "absent" is a decision (the dispatcher
        dead-letters an unknown lifecycle id). ``node`` is the one the slot map named
        before the read: if redis-py followed a ``MOVED`` instead, the check costs one
        retry, never a stale answer taken. Only misses pay for it (rare on a hot path).
        """
        if node is not None:
            await self._still_serving(node, key, "read")

    async def confirm_current(self, account_id: str, order_id: str) -> None:
        """``StoreError`` unless the node the slot map names for the order still serves it.

        Asked once, not retried: the reads must be made again (the caller's message is
        retried), since the map names the replaced master until it answers ``MOVED``.
        """
        key = self.order_key(account_id, order_id)
        try:
            await self._confirm_miss(self._read_node(key), key)
        except ReplacedMasterError as exc:
            raise StoreError(
                "read from a master replaced meanwhile: read again",
                url=mask_url(self._url),
                error=repr(exc),
            ) from exc

    # -- reference data, one copy per read --------------------------------------------------

    def _quotes_key(self, account_id: str) -> str:
        return self.price_key(self._copy_of(account_id))

    def _token_key(self, account_id: str) -> str:
        return self.instruments_token_copy_key(self._copy_of(account_id))

    async def _write_copies(self, operation: str, commands: list[tuple[Any, ...]]) -> None:
        async def do() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            return await pipe.execute()

        await self._call(operation, do)

    async def put_price(self, symbol: str, data: dict[str, Any]) -> None:
        """Store the latest quote in every copy."""
        raw = _dump(data)
        commands = [("HSET", self.price_key(n), symbol, raw) for n in range(self._copies)]
        await self._write_copies("put_price", commands)

    async def get_price(self, symbol: str) -> dict[str, Any] | None:
        """The latest quote (from one copy), or ``None``."""
        key = self.price_key(self._next_copy())

        async def do() -> Any:
            return await self._redis.hget(key, symbol)

        raw = await self._call("get_price", do)
        return None if raw is None else _load(raw)

    async def get_prices(self) -> dict[str, dict[str, Any]]:
        """Every latest quote (from one copy)."""
        key = self.price_key(self._next_copy())

        async def do() -> dict[Any, Any]:
            result: dict[Any, Any] = await self._redis.hgetall(key)
            return result

        return _quotes(await self._call("get_prices", do))

    async def put_instrument(self, group: str, symbol: str, data: dict[str, Any]) -> None:
        """Store an instrument config in every copy, then a new token in every copy."""
        raw = _dump(data)
        commands = [
            ("SET", self.instrument_copy_key(group, symbol, n), raw) for n in range(self._copies)
        ]
        await self._write_copies("put_instrument", commands)
        token = new_instruments_token()
        tokens = [("SET", self.instruments_token_copy_key(n), token) for n in range(self._copies)]
        await self._write_copies("put_instrument", tokens)

    async def get_instrument(self, group: str, symbol: str) -> dict[str, Any] | None:
        """An instrument config (from one copy), or ``None``."""
        key = self.instrument_copy_key(group, symbol, self._next_copy())
        return await self._get_json("get_instrument", key)
