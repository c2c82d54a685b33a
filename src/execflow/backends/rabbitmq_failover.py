"""Several RabbitMQ hosts behind one robust connection, failing over between them.

``EXECFLOW_BROKER_URL`` may name several nodes of one cluster:
``amqp://user:pass@h1:5672,h2:5673,h3/vhost?params`` (one set of credentials, one virtual
host and one query for all of them). aio-pika's ``connect_robust`` takes one URL and, once
connected, reconnects to that host only: with that host gone for good, a process would
retry it forever while the rest of the cluster serves. So ``FailoverConnection`` is
aio-pika's ``RobustConnection`` with one change: the URL of its next connection attempt.

* ``connect_failover`` tries each host in turn (fail fast on each) and keeps the first
  that answers.
* Whenever the connection closes, an open connection lost as much as an attempt failed,
  the next attempt goes to the next host; the host just left comes round again after the
  others. The host just lost is the suspect one: a node stopped with SIGSTOP still has
  its kernel accept connections on its port and then never answers the handshake (a
  retry there hung for the whole connect timeout), and a node resumed into a minority
  answers the handshake but cannot serve its quorum queues, which any other node of the
  cluster serves. (Telling "lost" from "attempt failed" by ``connected`` did not work
  either: aio-pika 10 sets it before restoring the channels, so a node failing every
  restore looked like a lost connection and was tried again.)
  Everything else is aio-pika's own recovery: the channels are reopened, queues
  re-declared and consumers re-subscribed on the new connection, and the bus's
  publishes interrupted meanwhile are retried by their own path (``RabbitMQBus``).

aio-pika calls ``_on_connection_close`` both when an open connection is lost and when a
connection attempt fails: that one hook is where the host changes.
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

__all__ = ["FailoverConnection", "broker_urls", "connect_failover"]

log = logging.getLogger("execflow.backends.rabbitmq_failover")

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
    """A robust connection that moves on to the next host whenever it closes."""

    def __init__(self, urls: Sequence[str], start: int = 0, **kwargs: Any) -> None:
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
        super().__init__(self._urls[self._current], **kwargs)
        self.failovers = 0

    @property
    def current_url(self) -> str:
        """The host the connection uses (or tries next), password masked."""
        return mask_url(str(self._urls[self._current]))

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        # every close moves on (module docstring): a connection lost, an attempt failed
        if len(self._urls) > 1 and not self._close_called:
            left = self.current_url
            self._current = (self._current + 1) % len(self._urls)
            self.url = self._urls[self._current]
            self.failovers += 1
            # the hosts in the message itself: the log bridge keeps only the message
            log.warning(
                "RabbitMQ connection to %s lost or refused; the next attempt goes to %s",
                left,
                self.current_url,
            )
        await super()._on_connection_close(closing)


async def connect_failover(
    url: str, *, timeout_s: float | None = None, **kwargs: Any
) -> FailoverConnection:
    """Open a ``FailoverConnection`` to the first host of ``url`` that answers.

    ``kwargs`` go to ``RobustConnection`` (``heartbeat``, ``reconnect_interval``,
    ``client_properties``...). Every host refusing raises the last host's error.
    """
    urls = broker_urls(url)
    error: BaseException | None = None
    for start in range(len(urls)):
        connection = FailoverConnection(urls, start=start, **kwargs)
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
