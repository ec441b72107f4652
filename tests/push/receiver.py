"""A webhook receiver for tests: a small HTTP/1.1 server on a free loopback port, started by
the test in its own event loop. ``answer(request)`` decides each response's status, or its
whole ``Reply`` with a body and headers (a client's key set: tests/oauth), and may sleep;
every request is recorded with its headers and body when it is answered, and in
``arrivals`` as soon as it has arrived (a request whose answer never comes is there only), with
the sender's port (which process sent it: tests/faults/support.py ``pid_of_peer``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

# The settings of an app whose dispatcher runs, quickly, with receivers on the loopback.
FAST = {
    "push_dispatch": True,
    "webhook_allowed_hosts": "127.0.0.1",
    "push_poll_seconds": 0.05,
    "push_retry_base_seconds": 0.05,
    "push_retry_max_seconds": 0.2,
    "push_timeout_seconds": 2.0,
}


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    status: int  # what the receiver answered (0: not yet)
    peer_port: int = 0  # the sender's end of the connection, on 127.0.0.1
    at: float = 0.0  # time.monotonic() when it arrived


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Answer = Callable[["Received"], Awaitable[int | Reply] | int | Reply]


@dataclass
class Receiver:
    answer: Answer
    port: int = 0
    received: list[Received] = field(default_factory=list)
    arrivals: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def accepted(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.status < 300]

    async def wait_for(self, check: Callable[[Receiver], bool], within_s: float = 20) -> None:
        """Until ``check(self)`` holds (an AssertionError after ``within_s`` seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while not check(self):
            remaining = deadline - loop.time()
            assert remaining > 0, f"timed out; received {len(self.received)} requests"
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), min(remaining, 0.5))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_port = int(writer.get_extra_info("peername")[1])
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                _method, path, _version = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                pending = Received(path, headers, body, 0, peer_port, time.monotonic())
                self.arrivals.append(pending)
                answer = self.answer(pending)
                if not isinstance(answer, int | Reply):
                    answer = await answer
                reply = answer if isinstance(answer, Reply) else Reply(answer)
                status = reply.status
                self.received.append(dataclasses.replace(pending, status=status))
                self.arrived.set()
                sent = {"Content-Length": str(len(reply.body))} | reply.headers
                if 300 <= status < 400:
                    sent.setdefault("Location", "http://127.0.0.1:1/elsewhere")
                lines = "".join(f"{name}: {value}\r\n" for name, value in sent.items())
                writer.write(f"HTTP/1.1 {status} X\r\n{lines}\r\n".encode() + reply.body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def receiving(answer: Answer) -> AsyncIterator[Receiver]:
    receiver = Receiver(answer)
    server = await asyncio.start_server(receiver._handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


def always(status: int) -> Answer:
    return lambda _request: status


def payload(request: Received) -> dict[str, Any]:
    import json

    body: dict[str, Any] = json.loads(request.body)
    return body
