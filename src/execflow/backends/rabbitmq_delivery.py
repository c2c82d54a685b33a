"""One RabbitMQ delivery behind the ``Delivery`` port: settle it once, on its channel.

``ack`` hands the ack to the consumer's ``ChannelAcks`` when it holds acks
(``rabbitmq_acks``). ``retry_later`` publishes a copy (``attempt`` + 1) to the queue's
delay queue and ``dead_letter`` one to the DLQ, each confirmed by the broker before the
original is acknowledged. Header values arrive as AMQP types and are read as text; a
message the broker dead-lettered itself is given ``x-reason: broker_<reason>`` when read
from the DLQ (``rabbitmq_queues.broker_dead_letter_headers``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aio_pika.abc import AbstractIncomingMessage

from execflow.backends.bus import (
    H_MESSAGE_ID,
    Message,
    attempt_of,
    dead_letter_headers,
    retry_headers,
)
from execflow.backends.rabbitmq_queues import broker_dead_letter_headers
from execflow.errors import BusError

if TYPE_CHECKING:
    from execflow.backends.rabbitmq import RabbitMQBus
    from execflow.backends.rabbitmq_acks import ChannelAcks

__all__ = ["RabbitDelivery"]


def _header_text(value: Any) -> str | None:
    """AMQP header values as text; nested tables and arrays (e.g. ``x-death``) are dropped."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool | int | float):
        return str(value)
    return None


class RabbitDelivery:
    """An ``IncomingMessage`` behind the ``Delivery`` port."""

    def __init__(
        self,
        bus: RabbitMQBus,
        queue: str,
        incoming: AbstractIncomingMessage,
        acks: ChannelAcks | None = None,
    ) -> None:
        self._bus = bus
        self._incoming = incoming
        self._acks = acks
        # a held ack has no await in it (bus.ACK_NEVER_SUSPENDS): the runner settles inline
        self.ack_never_suspends = acks is not None
        self.settled = False
        headers: dict[str, str] = {}
        for key, value in (incoming.headers or {}).items():
            text = _header_text(value)
            if text is not None:
                headers[key] = text
        if queue == bus.dlq_name:
            headers = broker_dead_letter_headers(headers, (incoming.headers or {}).get("x-death"))
        message_id = incoming.message_id or headers.get(H_MESSAGE_ID) or ""
        headers.setdefault(H_MESSAGE_ID, message_id)
        self.message = Message(
            body=incoming.body,
            headers=headers,
            message_id=message_id,
            queue=queue,
            attempt=attempt_of(headers),
            redelivered=bool(incoming.redelivered),
        )

    def _claim(self) -> None:
        if self.settled:
            raise BusError("delivery already settled", message_id=self.message.message_id)
        self.settled = True

    async def ack(self) -> None:
        """Acknowledge on the channel the message came from (held and sent with the
        channel's next run of acks when the consumer holds them, ``rabbitmq_acks``)."""
        self._claim()
        if self._acks is not None and self._incoming.delivery_tag is not None:
            self._acks.ack(self._incoming.delivery_tag)
            return
        try:
            await self._incoming.ack()
        except Exception as exc:
            raise BusError(
                "ack failed; the broker will deliver the message again",
                queue=self.message.queue,
                message_id=self.message.message_id,
            ) from exc

    async def nack(self, requeue: bool = True) -> None:
        """Reject, requeued or dropped."""
        self._claim()
        try:
            await self._incoming.nack(requeue=requeue)
        except Exception as exc:
            raise BusError(
                "nack failed; the broker will deliver the message again",
                queue=self.message.queue,
                message_id=self.message.message_id,
            ) from exc
        if self._acks is not None and self._incoming.delivery_tag is not None:
            self._acks.settled_otherwise(self._incoming.delivery_tag)

    async def retry_later(self, delay_s: float, headers: Mapping[str, str] | None = None) -> None:
        """Publish a copy (attempt + 1) through the delay queue, confirmed; then ack."""
        if self.settled:
            raise BusError("delivery already settled", message_id=self.message.message_id)
        new_headers = retry_headers(self.message.headers, self.message.attempt, headers)
        delay_queue = await self._bus.declare_delay_queue(self.message.queue, delay_s)
        await self._bus.publish(
            delay_queue, self.message.body, new_headers, self.message.message_id
        )
        await self.ack()

    async def dead_letter(
        self, reason: str, error: str | None = None, body: bytes | None = None
    ) -> None:
        """Publish to the DLQ with ``x-*`` headers, confirmed; then ack."""
        if self.settled:
            raise BusError("delivery already settled", message_id=self.message.message_id)
        headers = dead_letter_headers(
            self.message.headers,
            reason=reason,
            error=error,
            original_queue=self.message.queue,
            attempt=self.message.attempt,
            now=self._bus.clock.now(),
        )
        kept = self.message.body if body is None else body
        await self._bus.publish(self._bus.dlq_name, kept, headers, self.message.message_id)
        await self.ack()
