"""Revocations pushed to every process (PostgreSQL ``LISTEN``/``NOTIFY``).

Each process caches the tokens it has looked up (``TokenCache``). Without this module a
revocation reaches the other processes only when their copy expires, so the cache must be
short (1 s): with hundreds of device tokens, most requests then miss it and pay a look-up.

``TokenService.revoke`` notifies the token's id in its own transaction, which PostgreSQL
delivers when (and only if) the revocation commits, to every connection listening on the
channel: every worker of every machine on the same primary. Each process listens on one
connection of its own (a pooler in transaction mode cannot carry ``LISTEN``: this connection
goes to PostgreSQL directly) and forgets the token at once. While it listens, the cache keeps
entries for ``OUTCOMES_TOKEN_CACHE_PUSHED_SECONDS``; when the connection is lost the cache is
emptied and falls back to the short TTL until it listens again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.cache import TokenCache

logger = logging.getLogger("app.auth.revocations")

CHANNEL = "outcomes_token_revoked"
RECONNECT_SECONDS = 1.0


async def notify_revoked(session: AsyncSession, token_id: uuid.UUID) -> None:
    """Tell every listening process, when this session's transaction commits."""
    await session.execute(
        text("SELECT pg_notify(:channel, :token_id)"),
        {"channel": CHANNEL, "token_id": str(token_id)},
    )


class RevocationListener:
    """Keeps one connection listening on ``CHANNEL`` while the app runs, reconnecting when it
    is lost; tells the cache whether it hears every revocation."""

    def __init__(self, dsn: str, cache: TokenCache, connect_timeout_seconds: float) -> None:
        self.dsn = dsn
        self.cache = cache
        self.connect_timeout_seconds = connect_timeout_seconds
        self._task: asyncio.Task[None] | None = None
        self.backend_pid: int | None = None  # the listening connection's server process

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="token-revocations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.cache.hear_revocations(False)

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("not listening for token revocations: %s", type(exc).__name__)
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout_seconds)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._revoked)
            self.backend_pid = conn.get_server_pid()
            self.cache.hear_revocations(True)
            await lost.wait()
            logger.warning("the token revocation listener lost its connection; reconnecting")
        finally:
            self.cache.hear_revocations(False)
            conn.terminate()

    def _revoked(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self.cache.forget(uuid.UUID(payload))
        except ValueError:  # not a token id: forget everything rather than keep a stale entry
            self.cache.clear()
