"""Queue arguments per type, the broker's refusals as startup errors, broker host lists."""

from __future__ import annotations

import asyncio

import pytest

from execflow.backends.bus import H_ORIGINAL_QUEUE, H_REASON
from execflow.backends.rabbitmq_failover import FailoverConnection, broker_urls
from execflow.backends.rabbitmq_queues import (
    QueueArguments,
    QueueType,
    broker_dead_letter_headers,
    declaration_refused,
)


def test_quorum_work_queues_set_every_dead_letter_argument() -> None:
    arguments = QueueArguments("quorum", "p.dlq", delivery_limit=12)
    assert arguments.for_queue("p.reports") == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "p.dlq",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-delivery-limit": 12,
    }
    # the DLQ: replicated, but never dead-letters (nor drops) anything itself
    assert arguments.for_queue("p.dlq") == {"x-queue-type": "quorum"}
    delay = arguments.for_delay("p.reports", 500)
    assert delay["x-queue-type"] == "quorum"
    assert delay["x-message-ttl"] == 500
    assert delay["x-dead-letter-routing-key"] == "p.reports"
    assert delay["x-dead-letter-strategy"] == "at-least-once"


def test_classic_queues_keep_their_old_arguments() -> None:
    arguments = QueueArguments("classic", "p.dlq")
    assert arguments.for_queue("p.reports") == {"x-queue-type": "classic"}
    assert arguments.for_queue("p.dlq") == {"x-queue-type": "classic"}
    assert arguments.for_delay("p.reports", 50) == {
        "x-queue-type": "classic",
        "x-message-ttl": 50,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "p.reports",
    }


@pytest.mark.parametrize(
    ("reply", "current"),
    [
        (
            "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'p.dlq' in vhost "
            "'/': received the value 'quorum' of type 'longstr' but current is none",
            "classic",
        ),
        (
            "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'p.dlq' in vhost "
            "'/': received 'classic' but current is 'quorum'",
            "quorum",
        ),
    ],
)
def test_a_queue_of_another_type_is_a_startup_error_saying_what_to_do(
    reply: str, current: str
) -> None:
    wanted: QueueType = "classic" if current == "quorum" else "quorum"
    error = declaration_refused("p.dlq", wanted, reply)
    text = str(error)
    assert f"'p.dlq' exists on the broker as a {current} queue" in text
    assert f"EXECFLOW_QUEUE_TYPE={current}" in text
    assert "docs/running.md" in text
    assert error.fields["current_type"] == current


def test_other_inequivalent_arguments_name_the_argument() -> None:
    reply = (
        "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'p.reports' in "
        "vhost '/': received '4' but current is '3'"
    )
    error = declaration_refused("p.reports", "quorum", reply)
    assert error.fields["argument"] == "x-delivery-limit"
    assert "'p.reports'" in str(error)


def test_a_message_the_broker_dead_lettered_gets_a_reason() -> None:
    x_death = [
        {"reason": "delivery_limit", "queue": "p.worker.open", "count": 1},
        {"reason": "expired", "queue": "p.worker.open.delay.50", "count": 1},
    ]
    headers = {"x-first-death-reason": "expired", "x-first-death-queue": "p.worker.open.delay.50"}
    out = broker_dead_letter_headers(headers, x_death)
    assert out[H_REASON] == "broker_delivery_limit"
    assert out[H_ORIGINAL_QUEUE] == "p.worker.open"
    assert broker_dead_letter_headers(headers, None)[H_REASON] == "broker_expired"
    # the pipeline's own dead letters keep their reason
    ours = {H_REASON: "poison", H_ORIGINAL_QUEUE: "p.reports"}
    assert broker_dead_letter_headers(ours, x_death) == ours
    assert H_REASON not in broker_dead_letter_headers({}, None)


def test_broker_urls_split_a_host_list() -> None:
    assert broker_urls("amqp://u:p@h1:5672,h2:5673, h3/vh?heartbeat=5") == [
        "amqp://u:p@h1:5672/vh?heartbeat=5",
        "amqp://u:p@h2:5673/vh?heartbeat=5",
        "amqp://u:p@h3/vh?heartbeat=5",
    ]
    assert broker_urls("amqp://h1,h2") == ["amqp://h1", "amqp://h2"]
    single = "amqp://guest:guest@127.0.0.1:5672/"
    assert broker_urls(single) == [single]
    with pytest.raises(ValueError, match="empty host"):
        broker_urls("amqp://u:secret@h1,,h2/")
    with pytest.raises(ValueError, match="not a broker URL"):
        broker_urls("h1,h2")


async def test_every_close_moves_to_the_next_host_a_lost_connection_too() -> None:
    connection = FailoverConnection(
        ["amqp://u:p@h1:5672/", "amqp://u:p@h2:5673/", "amqp://u:p@h3:5674/"]
    )
    loop = asyncio.get_running_loop()
    refused: asyncio.Future[None] = loop.create_future()
    refused.set_exception(ConnectionRefusedError(111, "refused"))
    lost: asyncio.Future[None] = loop.create_future()
    lost.set_exception(ConnectionResetError(104, "reset"))
    assert connection.url.host == "h1"
    # an open connection lost (a paused node's kernel would accept a retry and the
    # handshake then hang): the next host, not h1 again
    connection.connected.set()
    await connection._on_connection_close(lost)
    assert (connection.url.host, connection.url.port, connection.failovers) == ("h2", 5673, 1)
    connection.connected.clear()
    await connection._on_connection_close(refused)  # that attempt failed: the next host
    assert (connection.url.host, connection.failovers) == ("h3", 2)
    await connection._on_connection_close(refused)  # and round again
    assert connection.url.host == "h1"
    assert connection.current_url == "amqp://u:***@h1:5672/"
    await connection.close()
