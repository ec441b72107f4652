"""Idempotency keys in the database: find, claim (in the request's transaction), complete,
purge. The semantics are described in ``app/idempotency/__init__.py``."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import CursorResult, delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import IdempotencyKey
from app.core.background import repeating
from app.core.db import utcnow
from app.idempotency.errors import KeyInUse

log = logging.getLogger("app.idempotency")

# A `processing` row is committed together with the request's write and turned `completed`
# a moment later. One that stays `processing` longer than this lost its response: the
# process stopped between the commit and storing the response.
STALE_AFTER = timedelta(minutes=5)


@dataclass(slots=True)
class Claim:
    """A POST carrying a key not seen before: what its own transaction must store."""

    token_id: uuid.UUID
    key: str
    request_hash: str
    # True once the key row is part of the request's transaction (see ``insert_processing``):
    # only then is there a row to complete.
    inserted: bool = False


def request_hash(method: str, path: str, query: bytes, body: bytes) -> str:
    """What "the same request" means: method, path, query string and body, byte for byte."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, body):
        # Length-prefixed, so no two different requests concatenate to the same bytes.
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


async def find_key(session: AsyncSession, token_id: uuid.UUID, key: str) -> IdempotencyKey | None:
    """The key's row, if it has not expired. An expired row not yet purged is deleted (the
    caller commits): past its retention the key is new again, and its INSERT must not fail."""
    row = await session.get(IdempotencyKey, (token_id, key))
    if row is not None and row.expires_at <= utcnow():
        await session.delete(row)
        await session.flush()
        return None
    return row


async def insert_processing(session: AsyncSession, claim: Claim, retention: timedelta) -> None:
    """Add the key, as `processing`, to the request's transaction: it commits with the write or
    not at all.

    Two requests with the same key can both find it absent and both run. The primary key
    settles it: the second INSERT waits for the first transaction (PostgreSQL) or finds its
    row (SQLite, whose writers take turns), fails, and takes its own write down with it, so
    exactly one write is kept. The loser answers 409, as if it had arrived a moment later.
    """
    now = utcnow()
    # A Core INSERT (not session.add + flush): it runs this one statement, so an
    # IntegrityError here is about this key, never about another pending object.
    stmt = insert(IdempotencyKey).values(
        token_id=claim.token_id,
        key=claim.key,
        request_hash=claim.request_hash,
        state="processing",
        created_at=now,
        expires_at=now + retention,
    )
    try:
        await session.execute(stmt)
    except IntegrityError as exc:
        raise KeyInUse() from exc
    claim.inserted = True


async def complete(
    sessionmaker: async_sessionmaker[AsyncSession],
    claim: Claim,
    status: int,
    body: bytes | None,
    content_type: str | None,
) -> None:
    """Store the response for replay (its own short transaction, after the write committed);
    a body of None marks a response that must not be kept."""
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(IdempotencyKey)
            .where(
                IdempotencyKey.token_id == claim.token_id,
                IdempotencyKey.key == claim.key,
                IdempotencyKey.state == "processing",
            )
            .values(
                state="completed",
                response_status=status,
                response_body=body,
                response_content_type=content_type,
            )
        )


async def purge_expired(session: AsyncSession, now: datetime | None = None) -> int:
    """Delete keys past their ``expires_at``; the caller commits. Returns how many."""
    result = await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.expires_at < (now or utcnow()))
    )
    assert isinstance(result, CursorResult)
    return result.rowcount


async def _purge(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        purged = await purge_expired(session)
    if purged:
        log.info("purged %d expired idempotency keys", purged)


def purging_in_background(
    sessionmaker: async_sessionmaker[AsyncSession], every_seconds: float
) -> AbstractAsyncContextManager[asyncio.Task[None]]:
    """Purge expired keys now and every ``every_seconds`` while the app runs."""
    return repeating("purging idempotency keys", every_seconds, partial(_purge, sessionmaker), log)


def is_stale(row: IdempotencyKey, now: datetime | None = None) -> bool:
    return row.state == "processing" and row.created_at < (now or utcnow()) - STALE_AFTER
