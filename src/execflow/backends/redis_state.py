"""Redis state store (redis-py asyncio): one pool, Cluster-ready keys, Lua compare-and-set.

Key layout (``ef`` is the configurable prefix; ``{...}`` is a Redis Cluster hash tag, so
one account's keys live in one slot and a commit can touch them atomically):

======================================  ==================================================
``ef:{<account_id>}:account``           hash ``v`` (version), ``d`` (JSON document); an
                                        account kept as rows (``backends.state``) has
                                        instead ``h`` (its header), ``s`` (stamp) and
                                        ``p:<order_id>`` per position
``ef:{<account_id>}:order:<order_id>``  hash ``v``, ``d``
``ef:{<account_id>}:orders``            set of the account's order ids
``ef:lc:{<lifecycle_id>}``              JSON string, written with SET NX
``ef:instr:{<group>}:<symbol>``         JSON string
``ef:instr-token``                      the instrument configs' token
                                        (``TransitionReads.instruments_token``), SET
                                        after each instrument config
``ef:px``                               hash symbol -> JSON quote
======================================  ==================================================

``commit`` runs one Lua script that only compares versions and writes; all business
logic stays in Python. An account's rows live in its own hash, so every read of it is one
command (atomic) and the whole account one key. A hash written by an older release has no
``s``: its ``d`` is the whole document, read as such, and converted by its next whole
write (a worker writes whole whenever it read no stamp). The header of an account kept as
rows is not ``d``, so an older release (which reads ``v`` and ``d`` only) finds no such
account rather than one without positions, and cannot write over it (its create expects
version 0). Connection errors and timeouts
are retried with backoff (``attempts``), then raised as ``StoreError``. A commit retried
after a lost reply may report ``VersionConflict`` although the first attempt was applied;
callers reload and find their exec_id in the ledger, so the report is skipped, never
applied twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, TypeVar

import hiredis
import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from execflow.backends.state import (
    TransitionReads,
    Versioned,
    Write,
    check_writes,
    new_instruments_token,
    stored_account,
)
from execflow.errors import StoreError, VersionConflict
from execflow.logs.masking import mask_url

__all__ = ["RedisStateStore"]

log = logging.getLogger("execflow.backends.redis_state")

T = TypeVar("T")

# KEYS: n document keys, then the account's order-id set.
# ARGV: n, then (expected_version, json) per document, then the index of the account's
# document among the KEYS (0: none), and for it: its mode ("whole", "rows", "delta"), the
# new stamp ("" keeps it), the stamp a delta was read at ("": not checked), the removed
# row keys (count, keys), the put rows (count, then key and json each); then the order
# ids to index.
# The account's document goes to ``d`` when whole, else (its header) to ``h``; a whole or
# rows write drops the other field, the stamp and every row first.
# Returns 0 on success, or {index, actual_version} of the first mismatch, a delta whose
# read stamp is no longer the account's included (nothing written);
# an error when a delta meets an account not kept as rows (nothing written).
_CAS_SCRIPT = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local cur = redis.call('HGET', KEYS[i], 'v')
  local v = 0
  if cur then v = tonumber(cur) end
  if v ~= tonumber(ARGV[2 * i]) then
    return {i, v}
  end
end
local a = tonumber(ARGV[2 * n + 2])
local p = 2 * n + 3
local mode = ''
local stamp = ''
if a > 0 then
  mode = ARGV[p]
  stamp = ARGV[p + 1]
  local read_stamp = ARGV[p + 2]
  p = p + 3
  if mode == 'delta' then
    local stored = redis.call('HGET', KEYS[a], 's')
    if not stored then
      return redis.error_reply('account is not kept as rows')
    end
    if read_stamp ~= '' and stored ~= read_stamp then
      return {a, tonumber(ARGV[2 * a])}
    end
  end
end
for i = 1, n do
  local field = 'd'
  if i == a and mode ~= 'whole' then field = 'h' end
  redis.call('HSET', KEYS[i], 'v', tonumber(ARGV[2 * i]) + 1, field, ARGV[2 * i + 1])
end
if a > 0 then
  local key = KEYS[a]
  if mode ~= 'delta' then
    local other = 'h'
    if mode == 'rows' then other = 'd' end
    local drop = {}
    for _, f in ipairs(redis.call('HKEYS', key)) do
      if string.sub(f, 1, 2) == 'p:' or f == 's' or f == other then
        drop[#drop + 1] = f
        if #drop >= 1000 then
          redis.call('HDEL', key, unpack(drop))
          drop = {}
        end
      end
    end
    if #drop > 0 then
      redis.call('HDEL', key, unpack(drop))
    end
  end
  local removed = tonumber(ARGV[p])
  for j = 1, removed do
    redis.call('HDEL', key, 'p:' .. ARGV[p + j])
  end
  p = p + removed + 1
  local put = tonumber(ARGV[p])
  for j = 1, put do
    redis.call('HSET', key, 'p:' .. ARGV[p + 2 * j - 1], ARGV[p + 2 * j])
  end
  p = p + 2 * put + 1
  if stamp ~= '' then
    redis.call('HSET', key, 's', stamp)
  end
end
if #ARGV >= p then
  redis.call('SADD', KEYS[n + 1], unpack(ARGV, p))
end
return 0
"""


def _dump(data: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError as exc:
        raise StoreError("document is not JSON-serialisable", error=str(exc)) from exc


def _load(raw: bytes | str) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(raw)
    return value


def _raise_conflict(writes: Sequence[Write], result: Any) -> None:
    """Nothing when the script answered 0, else ``VersionConflict`` for its mismatch."""
    if result == 0:
        return
    index, actual = int(result[0]), int(result[1])
    write = writes[index - 1]
    raise VersionConflict(
        f"{write.kind} changed meanwhile",
        kind=write.kind,
        key=write.key,
        expected_version=write.expected_version,
        actual_version=actual,
    )


def _versioned(reply: list[Any]) -> Versioned | None:
    """A document from its ``HMGET v d`` reply (``None`` when absent)."""
    version, raw = reply
    if version is None or raw is None:
        return None
    return Versioned(int(version), _load(raw))


_HEAD_FIELDS = ("v", "d", "s", "h")
"""An account hash's version, whole document, stamp and header (``h`` with a stamp)."""


def _head(reply: list[Any]) -> Versioned | None:
    """An account's head from its ``HMGET v d s h`` reply (``None`` when absent)."""
    version, whole, stamp, header = reply
    raw = whole if stamp is None else header
    if version is None or raw is None:
        return None
    return Versioned(int(version), _load(raw), None if stamp is None else _text(stamp))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _whole_account(reply: dict[Any, Any]) -> Versioned | None:
    """The whole account from its hash's ``HGETALL`` reply: rows assembled in key order."""
    fields = {_text(k): v for k, v in reply.items()}
    head = _head([fields.get(name) for name in _HEAD_FIELDS])
    if head is None:
        return None
    data, stamp = head.data, head.stamp
    if stamp is not None:
        rows = sorted((name[2:], row) for name, row in fields.items() if name.startswith("p:"))
        data["positions"] = [_load(row) for _, row in rows]
    return Versioned(head.version, data, stamp)


async def _unlink(walker: Any, keys: list[Any]) -> int:
    """``UNLINK`` each key, one command a key: keys of different hash slots cannot share a
    command in a cluster."""
    pipe = walker.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("UNLINK", key)
    return sum(int(n) for n in await pipe.execute())


def _quotes(reply: dict[Any, Any]) -> dict[str, dict[str, Any]]:
    """The quotes from the prices hash's ``HGETALL`` reply."""
    return {_text(k): _load(v) for k, v in reply.items()}


class _OneCallPacking:
    """A command packed into the Redis protocol by one call into hiredis.

    redis-py with hiredis still walks the arguments in Python (a memoryview check, then its
    encoder, four ``isinstance`` a value) before hiredis packs them; a worker's CAS commit
    has some fifteen, and that walk was about 7 % of its profiled process. hiredis takes
    str (as UTF-8), int, float and bytes itself and writes each as redis-py's encoder would
    (``tests/backends/test_redis_packing.py`` compares both); any other argument, and a
    command name of two words (``"CLIENT SETINFO"``, which redis-py splits), take
    redis-py's own way, with its errors.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0]
        if type(name) is str and " " not in name:
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass  # a bool, bytearray or memoryview: redis-py's way (and its DataError)
        packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
        return packed


class _Connection(_OneCallPacking, aioredis.Connection):
    """redis-py's TCP connection, packing commands in one call."""


class _SSLConnection(_OneCallPacking, aioredis.SSLConnection):
    """redis-py's TLS connection (``rediss://``), packing commands in one call."""


class _UnixConnection(_OneCallPacking, aioredis.UnixDomainSocketConnection):
    """redis-py's Unix socket connection (``unix://``), packing commands in one call."""


_ONE_CALL_PACKING: dict[type[Any], type[Any]] = {
    aioredis.Connection: _Connection,
    aioredis.SSLConnection: _SSLConnection,
    aioredis.UnixDomainSocketConnection: _UnixConnection,
}


class RedisStateStore:
    """The ``StateStore`` port on Redis."""

    def __init__(
        self,
        url: str,
        pool_size: int = 32,
        timeout_s: float = 5.0,
        key_prefix: str = "ef",
        attempts: int = 3,
        backoff_s: float = 0.05,
    ) -> None:
        self._url = url
        self._prefix = key_prefix
        self._timeout_s = timeout_s
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._pool: aioredis.ConnectionPool | None = None
        self._walk_client: aioredis.Redis | None = None
        # at most ``pool_size`` operations in at once (``_call``; ``_make_client`` says why)
        self._slots = asyncio.Semaphore(pool_size)
        # A ``redis.asyncio.Redis`` here, a ``RedisCluster`` in the cluster subclass: every
        # command this class sends exists on both with the same reply.
        self._redis: Any = self._make_client(url, pool_size, timeout_s)
        self._cas = self._redis.register_script(_CAS_SCRIPT)

    def _make_client(self, url: str, pool_size: int, timeout_s: float) -> Any:
        """One pool to one server; retries are ours (``_call``), redis-py's are off.

        No socket timeout: ``_call`` gives each operation one deadline instead. redis-py's
        socket timeout costs a task per command sent (``asyncio.wait_for``) and a timer per
        reply read, a fifth of a command's CPU here; a command the deadline cuts drops its
        connection (redis-py disconnects on any exception mid-command), as a socket timeout
        would. The SCAN walks, longer than one operation, go through ``_walk``.

        Not redis-py's ``BlockingConnectionPool``: its checkout (a condition, a timer and a
        predicate per command) cost more than the command's own work. ``_call`` lets at
        most ``pool_size`` operations in at once (``_slots``), each holding at most one
        connection at a time, so the plain pool never runs out of connections.
        """
        self._pool = aioredis.ConnectionPool.from_url(
            url,
            max_connections=pool_size,
            socket_timeout=None,  # not redis-py's default (5 s)
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=30,
        )
        # the class the URL's scheme chose, with its commands packed in one call
        pool_class = self._pool.connection_class
        self._pool.connection_class = _ONE_CALL_PACKING.get(pool_class, pool_class)
        return aioredis.Redis(connection_pool=self._pool)

    def _walk_redis(self) -> Any:
        """The client of the SCAN walks (``_walk``): two connections of their own, each
        command with the socket timeout (a third walk at once waits for a connection),
        opened on first use and closed with the store."""
        if self._walk_client is None:
            pool = aioredis.BlockingConnectionPool.from_url(
                self._url,
                max_connections=2,
                timeout=self._timeout_s,
                socket_timeout=self._timeout_s,
                socket_connect_timeout=self._timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
            self._walk_client = aioredis.Redis.from_pool(pool)
        return self._walk_client

    # -- keys -------------------------------------------------------------------------------

    def account_key(self, account_id: str) -> str:
        """Key of an account document."""
        return f"{self._prefix}:{{{account_id}}}:account"

    def order_key(self, account_id: str, order_id: str) -> str:
        """Key of an order document."""
        return f"{self._prefix}:{{{account_id}}}:order:{order_id}"

    def orders_key(self, account_id: str) -> str:
        """Key of the set of an account's order ids."""
        return f"{self._prefix}:{{{account_id}}}:orders"

    def lifecycle_key(self, lifecycle_id: str) -> str:
        """Key of a lifecycle record."""
        return f"{self._prefix}:lc:{{{lifecycle_id}}}"

    def instrument_key(self, group: str, symbol: str) -> str:
        """Key of an instrument config."""
        return f"{self._prefix}:instr:{{{group}}}:{symbol}"

    @property
    def instruments_token_key(self) -> str:
        """Key of the instrument configs' token."""
        return f"{self._prefix}:instr-token"

    @property
    def prices_key(self) -> str:
        """Key of the prices hash."""
        return f"{self._prefix}:px"

    # -- retries ----------------------------------------------------------------------------

    async def _call(self, operation: str, do: Callable[[], Awaitable[T]]) -> T:
        """Run ``do`` under one deadline of ``timeout_s`` per attempt (the client has no
        socket timeout: ``_make_client``) and a slot of the pool; see ``_with_retries``."""
        return await self._with_retries(operation, do, self._timeout_s, self._slots)

    async def _walk(self, operation: str, do: Callable[[Any], Awaitable[T]]) -> T:
        """Run the SCAN walk ``do`` on the walks' own client, which it is given; see
        ``_with_retries``. A walk (rebuilds and admin) may outlast one operation's deadline, so
        it has none as a whole: each of its commands has the socket timeout instead."""
        walker = self._walk_redis()
        return await self._with_retries(operation, lambda: do(walker), None, nullcontext())

    async def _with_retries(
        self,
        operation: str,
        do: Callable[[], Awaitable[T]],
        deadline_s: float | None,
        slot: AbstractAsyncContextManager[Any],
    ) -> T:
        """Run ``do``; retry connection errors with backoff; map failures to ``StoreError``."""
        delay_s = self._backoff_s
        for attempt in range(1, self._attempts + 1):
            try:
                async with asyncio.timeout(deadline_s), slot:
                    return await do()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                if attempt == self._attempts:
                    raise StoreError(
                        f"Redis unreachable: {operation} failed after {attempt} attempts",
                        url=mask_url(self._url),
                        error=repr(exc),
                    ) from exc
                log.warning(
                    "redis call failed; retrying",
                    extra={"operation": operation, "attempt": attempt, "error": repr(exc)},
                )
                await asyncio.sleep(delay_s)
                delay_s *= 4
            except RedisError as exc:
                raise StoreError(
                    f"Redis error during {operation}", url=mask_url(self._url), error=repr(exc)
                ) from exc
        raise StoreError(f"{operation}: no attempt made")  # attempts >= 1; unreachable

    # -- StateStore port --------------------------------------------------------------------

    async def connect(self) -> None:
        """Check Redis answers."""
        await self.ping()
        log.info("state store connected", extra={"url": mask_url(self._url)})

    async def close(self) -> None:
        """Close the pool."""
        await self._redis.aclose()
        if self._pool is not None:
            await self._pool.disconnect()
        if self._walk_client is not None:
            await self._walk_client.aclose()
            self._walk_client = None

    async def ping(self) -> None:
        """Raise ``StoreError`` when Redis does not answer."""
        await self._call("ping", self._redis.ping)

    async def get_account(self, account_id: str) -> Versioned | None:
        """The whole account document (its rows assembled; one HGETALL), or ``None``."""
        key = self.account_key(account_id)

        async def do() -> dict[Any, Any]:
            result: dict[Any, Any] = await self._redis.hgetall(key)
            return result

        return _whole_account(await self._call("get_account", do))

    async def get_account_head(self, account_id: str) -> Versioned | None:
        """The account's header and stamp (``HMGET v d s h``), or ``None``."""
        key = self.account_key(account_id)

        async def do() -> list[Any]:
            result: list[Any] = await self._redis.hmget(key, _HEAD_FIELDS)
            return result

        return _head(await self._call("get_account_head", do))

    async def get_order(self, account_id: str, order_id: str) -> Versioned | None:
        """The order document, or ``None``."""
        return await self._get_doc("get_order", self.order_key(account_id, order_id))

    async def _get_doc(self, operation: str, key: str) -> Versioned | None:
        async def do() -> list[Any]:
            node = self._read_node(key)
            result: list[Any] = await self._redis.hmget(key, ["v", "d"])
            if result[0] is None:
                await self._confirm_miss(node, key)
            return result

        return _versioned(await self._call(operation, do))

    # An "absent" answer is a decision (the dispatcher dead-letters an unknown lifecycle
    # id; a worker refuses an unknown order). One server's answer is final; the cluster
    # store overrides these two hooks to check that the node it read from still serves
    # the key's slot before "absent" is answered.
    def _read_node(self, key: str) -> Any:
        """The node a read of ``key`` goes to, taken before the read (none here)."""
        return None

    async def _confirm_miss(self, node: Any, key: str) -> None:
        """Called when a read of ``key`` on ``node`` found nothing (final on one server)."""

    def _quotes_key(self, account_id: str) -> str:
        """The quotes hash a transition of ``account_id`` reads."""
        return self.prices_key

    def _token_key(self, account_id: str) -> str:
        """The instrument configs' token a transition of ``account_id`` reads."""
        return self.instruments_token_key

    async def read_for_transition(self, account_id: str, order_id: str) -> TransitionReads:
        """The order, its account, every quote and the instrument configs' token in one
        pipelined round trip; an absent order is confirmed (``_confirm_miss``)."""
        order_key = self.order_key(account_id, order_id)

        async def do() -> list[Any]:
            node = self._read_node(order_key)
            pipe = self._redis.pipeline(transaction=False)
            pipe.hmget(order_key, ["v", "d"])
            pipe.hmget(self.account_key(account_id), _HEAD_FIELDS)
            pipe.hgetall(self._quotes_key(account_id))
            pipe.get(self._token_key(account_id))
            result: list[Any] = await pipe.execute()
            if result[0][0] is None:
                await self._confirm_miss(node, order_key)
            return result

        order, account, prices, token = await self._call("read_for_transition", do)
        token_text = None if token is None else _text(token)
        return TransitionReads(_versioned(order), _head(account), _quotes(prices), token_text)

    async def list_orders(
        self, account_id: str, skip: Collection[str] = ()
    ) -> dict[str, Versioned]:
        """Every order of an account, by order id; those in ``skip`` are not fetched."""

        async def do() -> dict[str, Versioned]:
            members = await self._redis.smembers(self.orders_key(account_id))
            named = (_text(m) for m in members)
            ids = sorted(oid for oid in named if oid not in skip)
            if not ids:
                return {}
            pipe = self._redis.pipeline(transaction=False)
            for order_id in ids:
                pipe.hmget(self.order_key(account_id, order_id), ["v", "d"])
            rows = await pipe.execute()
            return {
                oid: Versioned(int(v), _load(d))
                for oid, (v, d) in zip(ids, rows, strict=True)
                if v is not None and d is not None
            }

        return await self._call("list_orders", do)

    async def list_accounts(self) -> list[str]:
        """Every account id, sorted (SCAN; meant for rebuilds and admin, not hot paths)."""
        head = f"{self._prefix}:{{"
        tail = "}:account"

        async def do(walker: Any) -> list[str]:
            found = []
            async for key in walker.scan_iter(match=f"{head}*{tail}", count=1000):
                text = _text(key)
                found.append(text[len(head) : -len(tail)])
            return sorted(found)

        return await self._walk("list_accounts", do)

    async def commit(self, account_id: str, writes: Sequence[Write]) -> None:
        """Compare every version and write every document in one Lua call."""
        keys, args = self._cas_call(account_id, writes)

        async def do() -> Any:
            return await self._cas(keys=keys, args=args)

        _raise_conflict(writes, await self._call("commit", do))

    def _cas_call(self, account_id: str, writes: Sequence[Write]) -> tuple[list[str], list[Any]]:
        """The compare-and-set script's KEYS (all in the account's slot) and ARGV."""
        check_writes(account_id, writes)
        keys = [
            self.account_key(account_id)
            if w.kind == "account"
            else self.order_key(account_id, w.key)
            for w in writes
        ]
        keys.append(self.orders_key(account_id))
        args: list[Any] = [len(writes)]
        account: list[Any] = [0]
        for index, write in enumerate(writes, start=1):
            if write.kind != "account":
                args.extend([write.expected_version, _dump(write.data)])
                continue
            layout = stored_account(write)
            args.extend([write.expected_version, _dump(layout.header)])
            account = [
                index,
                layout.mode,
                layout.stamp or "",
                layout.read_stamp or "",
                len(layout.removed),
            ]
            account.extend(layout.removed)
            account.append(len(layout.put))
            for row_key, row in layout.put.items():
                account.extend([row_key, _dump(row)])
        args.extend(account)
        args.extend(w.key for w in writes if w.kind == "order" and w.expected_version == 0)
        return keys, args

    async def put_lifecycle(self, lifecycle_id: str, data: dict[str, Any]) -> bool:
        """Record if absent (SET NX)."""
        raw = _dump(data)

        async def do() -> bool:
            return bool(await self._redis.set(self.lifecycle_key(lifecycle_id), raw, nx=True))

        return await self._call("put_lifecycle", do)

    async def get_lifecycle(self, lifecycle_id: str) -> dict[str, Any] | None:
        """The lifecycle record, or ``None``."""
        return await self._get_json("get_lifecycle", self.lifecycle_key(lifecycle_id))

    async def put_instrument(self, group: str, symbol: str, data: dict[str, Any]) -> None:
        """Store an instrument config, then a new instrument configs' token (one pipeline:
        Redis runs its commands in order)."""
        raw = _dump(data)

        async def do() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(self.instrument_key(group, symbol), raw)
            pipe.set(self.instruments_token_key, new_instruments_token())
            return await pipe.execute()

        await self._call("put_instrument", do)

    async def get_instrument(self, group: str, symbol: str) -> dict[str, Any] | None:
        """An instrument config, or ``None``."""
        return await self._get_json("get_instrument", self.instrument_key(group, symbol))

    async def _get_json(self, operation: str, key: str) -> dict[str, Any] | None:
        async def do() -> Any:
            node = self._read_node(key)
            raw = await self._redis.get(key)
            if raw is None:
                await self._confirm_miss(node, key)
            return raw

        raw = await self._call(operation, do)
        return None if raw is None else _load(raw)

    async def put_price(self, symbol: str, data: dict[str, Any]) -> None:
        """Store the latest quote."""
        raw = _dump(data)

        async def do() -> Any:
            return await self._redis.hset(self.prices_key, symbol, raw)

        await self._call("put_price", do)

    async def get_price(self, symbol: str) -> dict[str, Any] | None:
        """The latest quote, or ``None``."""

        async def do() -> Any:
            return await self._redis.hget(self.prices_key, symbol)

        raw = await self._call("get_price", do)
        return None if raw is None else _load(raw)

    async def get_prices(self) -> dict[str, dict[str, Any]]:
        """Every latest quote."""

        async def do() -> dict[Any, Any]:
            result: dict[Any, Any] = await self._redis.hgetall(self.prices_key)
            return result

        return _quotes(await self._call("get_prices", do))

    async def flush_all(self) -> None:
        """Delete every key under this store's prefix (never FLUSHDB: the server is shared)."""

        async def do(walker: Any) -> int:
            removed = 0
            batch: list[Any] = []
            async for key in walker.scan_iter(match=f"{self._prefix}:*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    removed += await _unlink(walker, batch)
                    batch = []
            if batch:
                removed += await _unlink(walker, batch)
            return removed

        removed = await self._walk("flush_all", do)
        log.info("state store flushed", extra={"prefix": self._prefix, "keys": removed})
