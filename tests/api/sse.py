"""A tiny Server-Sent Events reader for the stream tests (httpx over real HTTP)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson


@dataclass
class SseClient:
    """Follows ``/v1/stream`` in the background, keeping every message it got."""

    client: httpx.AsyncClient
    token: str
    last_event_id: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        async with self.client.stream("GET", "/v1/stream", headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            current: dict[str, str] = {}
            async for line in response.aiter_lines():
                if not line:
                    if "event" in current:
                        message: dict[str, Any] = dict(current)
                        message["data"] = orjson.loads(current.get("data", "null"))
                        self.messages.append(message)
                    current = {}
                    continue
                name, _, value = line.partition(":")
                if name:  # a line starting with ":" is a comment
                    current[name] = value.removeprefix(" ")

    def events(self) -> list[dict[str, Any]]:
        """The ``order_event`` messages so far."""
        return [m for m in self.messages if m["event"] == "order_event"]

    async def wait_ready(self, timeout_s: float = 5.0) -> None:
        """Until the stream's ``ready`` message arrived (it always comes first)."""
        async with asyncio.timeout(timeout_s):
            while not self.messages:
                assert self.task is not None
                if self.task.done():
                    await self.task
                await asyncio.sleep(0.01)
        assert self.messages[0]["event"] == "ready"

    async def wait_for(self, kind: str, timeout_s: float = 10.0) -> None:
        """Until an event of ``kind`` arrived."""
        async with asyncio.timeout(timeout_s):
            while not any(m["data"]["kind"] == kind for m in self.events()):
                assert self.task is not None
                if self.task.done():
                    await self.task
                await asyncio.sleep(0.01)

    async def drop(self) -> str:
        """Disconnect; the id of the last message seen (what a browser would resume from)."""
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        return str(self.messages[-1]["id"])
