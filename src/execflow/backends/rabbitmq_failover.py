"""Several RabbitMQ hosts behind one robust connection, failing over between them.

``EXECFLOW_BROKER_URL`` may name several nodes of one cluster:
``amqp://user:pass@h1:5672,h2:5673,h3/vhost?params`` (one set of credentials, one virtual
host and one query for all of them). aio-pika's ``connect_robust`` takes one URL and, once
connected, reconnects to that host only: with that host gone for good, a process would
retry it forever while the rest of the cluster serves. So ``FailoverConnection`` is
aio-pika's ``RobustConnection`` with two changes, written here because aio-pika has no
host list (each is one method override; the recovery itself stays aio-pika's):

* The URL of the next attempt. ``connect_failover`` tries each host in turn (each attempt
  bounded by ``timeout_s``, the AMQP handshake included) and keeps the first that answers.
  Whenever the connection closes, a connection lost or an attempt failed, the next attempt
  goes to the next host; the same host comes round again after the others. The host just
  lost is the one most likely to be unfit: a node stopped with SIGSTOP still has the
  kernel accept connections on its port and then never answers the handshake; a node
  resumed into a minority (then restarted by ``autoheal``) answers the handshake but
  cannot serve its quorum queues. Any other node of the cluster serves the same queues.
* A bound on the restore. Once connected, aio-pika reopens the channels, re-declares the
  queues and re-subscribes the consumers (its ``_on_connected``), with no time limit: a
  node that answers the handshake but never the restore would hold the process there.
  After ``restore_timeout_s`` the connection is closed, and so the next host is tried.

Everything else is aio-pika's own recovery; the bus's publishes interrupted meanwhile are
retried by their own path (``RabbitMQBus``).

aio-pika calls ``_on_connection_close`` both when an open connection is lost and when a
connection attempt fails (its restore included): that one hook is where the host changes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import Any

from aio_pika import RobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from yarl import URL

from execflow.logs.masking import mask_url

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_RESTORE_TIMEOUT_S",
    "FailoverConnection",
    "broker_urls",
    "connect_failover",
]

log = logging.getLogger("execflow.backends.rabbitmq_failover")

DEFAULT_CONNECT_TIMEOUT_S = 10.0
# A restore reopens every channel, re-declares its queues and re-subscribes its consumers,
# one RPC after another, on a box that may be saturated (the fault suite's stress-ng): the
# bound is for a node that never finishes it, not for a slow one, hence 3 x the connect's.
DEFAULT_RESTORE_TIMEOUT_S = 30.0

_URL = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?:(?P<userinfo>[^@/?#]*)@)?"
    r"(?P<hosts>[^/?#]*)(?P<rest>.*)$"
)


def broker_urls(url: str) -> list[str]:
    """One URL per host of ``scheme://user:pass@h1:p1,h2:p2/vhost?query``.

    A URL with one host is returned as it is. An empty host in the list is a
    ``ValueError``.
    """
    found = _URL.match(url)
    if found is None:
        raise ValueError(f"not a broker URL: {mask_url(url)!r}")
    hosts = found["hosts"].split(",")
    if len(hosts) == 1:
        return [url]
    if any(not host.strip() for host in hosts):
        raise ValueError(f"empty host in the broker URL {mask_url(url)!r}")
    userinfo = f"{found['userinfo']}@" if found["userinfo"] is not None else ""
    return [f"{found['scheme']}://{userinfo}{host.strip()}{found['rest']}" for host in hosts]


class FailoverConnection(RobustConnection):
    """A robust connection that moves on to the next host whenever it closes, and that
    gives up on a restore taking longer than ``restore_timeout_s``."""

    def __init__(
        self,
        urls: Sequence[str],
        start: int = 0,
        *,
        restore_timeout_s: float | None = None,
        **kwargs: Any,
    ) -> None:
        if not urls:
            raise ValueError("no broker URL")
        # aiormq reads the heartbeat from the URL only (aio_pika.connect() moves it there;
        # a keyword to the connection class is silently ignored: 60 s instead)
        heartbeat = kwargs.pop("heartbeat", None)
        self._urls = [
            URL(u) if heartbeat is None else URL(u).update_query(heartbeat=int(heartbeat))
            for u in urls
        ]
        self._current = start % len(self._urls)
        self._restore_timeout_s = restore_timeout_s
        super().__init__(self._urls[self._current], **kwargs)
        self.failovers = 0

    @property
    def current_url(self) -> str:
        """The host the connection uses (or tries next), password masked."""
        return mask_url(str(self._urls[self._current]))

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        # Every close moves on, a lost connection as much as a failed attempt. (Telling
        # them apart by ``connected`` no longer works either: aio-pika 10 sets it before
        # the restore, so a node failing every restore looked like a lost connection and
        # was tried again, and again.)
        if len(self._urls) > 1 and not self._close_called:
            left = self.current_url
            self._current = (self._current + 1) % len(self._urls)
            self.url = self._urls[self._current]
            self.failovers += 1
            # the hosts in the message itself: the log bridge keeps only the message
            log.warning(
                "RabbitMQ connection to %s closed or failed (%s); the next attempt goes to %s",
                left,
                _reason(closing),
                self.current_url,
            )
        await super()._on_connection_close(closing)

    async def _on_connected(self) -> None:
        try:
            async with asyncio.timeout(self._restore_timeout_s):
                await super()._on_connected()
        except TimeoutError as exc:
            transport = self.transport
            log.warning(
                "RabbitMQ host %s did not restore the channels within %s s; closing",
                self.current_url,
                self._restore_timeout_s,
            )
            if transport is not None:
                # aio-pika closes the transport when a restore fails, not when it is
                # cancelled: close it here, which runs _on_connection_close (next host).
                # Its own error, if any, says less than the timeout raised below.
                await asyncio.gather(transport.close(exc), return_exceptions=True)
            raise


def _reason(closing: asyncio.Future[Any]) -> str:
    """Why a connection closed, for the log line (a cancelled future is a close asked for)."""
    if closing.cancelled():
        return "cancelled"
    error = closing.exception()
    return "closed" if error is None else repr(error)


async def connect_failover(
    url: str,
    *,
    timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    restore_timeout_s: float | None = DEFAULT_RESTORE_TIMEOUT_S,
    **kwargs: Any,
) -> FailoverConnection:
    """Open a ``FailoverConnection`` to the first host of ``url`` that answers.

    ``timeout_s`` bounds every connection attempt, the first and each reconnection, the
    AMQP handshake included; ``restore_timeout_s`` bounds each restore of the channels
    after a reconnection (None: unbounded). ``kwargs`` go to ``RobustConnection``
    (``heartbeat``, ``reconnect_interval``, ``client_properties``...). Every host refusing
    raises the last host's error.
    """
    urls = broker_urls(url)
    error: BaseException | None = None
    for start in range(len(urls)):
        connection = FailoverConnection(
            urls, start=start, restore_timeout_s=restore_timeout_s, **kwargs
        )
        try:
            await connection.connect(timeout=timeout_s)
        except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
            error = exc
            await connection.close()
            if len(urls) > 1:
                log.warning(
                    "RabbitMQ host %s unreachable at start (%r); trying the next",
                    mask_url(urls[start]),
                    exc,
                )
            continue
        return connection
    assert error is not None
    raise error
