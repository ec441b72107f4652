"""Deleting dead credentials, so that their tables hold what is alive and a while more.

A credential is dead once it can no longer be used; it is deleted when it has been dead for
OUTCOMES_CREDENTIAL_RETENTION_HOURS (kept meanwhile for GET /tokens, and for whoever
investigates what it did, though the audit trail, which is never purged, keeps every
request's token, client and device ids for good):

- access tokens (`api_tokens`) expired or revoked, unless an Idempotency-Key or an export job
  still refers to one (those have retentions of their own: the token goes at a later purge);
- enrolment codes expired (used or not) or burned: a used code lives until it expires, since
  presented again until then it revokes the device it enrolled;
- refresh tokens expired or revoked: a used one lives until it expires, since presented again
  until then it revokes its device.

Two kinds serve nothing once out of their window, and go at once: a client assertion's `jti`
once the assertion has expired (with the clock skew: app/oauth/backend_services.py), and the
token endpoint's failure counts of windows that no longer count (app/oauth/throttle.py).
Both are also trimmed as token requests come; the purge covers the times none come.

Every process of the service purges when it starts and every OUTCOMES_CREDENTIAL_PURGE_SECONDS
(0: never; `outcomes tokens purge` on a schedule instead), in batches of BATCH rows, each in a
transaction of its own, so a first purge after a long time holds no lock for long. Processes
purging at once take disjoint rows (PostgreSQL: SKIP LOCKED), and a row one skipped goes at
its next round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import astuple, dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.service import TokenService
from app.core.background import repeating
from app.core.config import Settings
from app.core.db import utcnow
from app.enrolment.repository import EnrolmentRepository
from app.oauth.backend_services import CLOCK_SKEW
from app.oauth.repository import ClientRepository
from app.oauth.throttle import FailureThrottle

log = logging.getLogger("app.credentials")

BATCH = 1000


@dataclass(frozen=True, slots=True)
class Purged:
    """How many rows of each kind one purge deleted."""

    access_tokens: int
    enrolment_codes: int
    refresh_tokens: int
    assertion_ids: int
    failure_counts: int

    def __str__(self) -> str:
        return (
            f"{self.access_tokens} access tokens, {self.enrolment_codes} enrolment codes, "
            f"{self.refresh_tokens} refresh tokens, {self.assertion_ids} assertion ids, "
            f"{self.failure_counts} failure counts"
        )


async def purge_dead_credentials(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    now: datetime | None = None,
) -> Purged:
    """One purge, as of ``now``."""
    now = now or utcnow()
    before = now - timedelta(hours=settings.credential_retention_hours)
    access_tokens = await _in_batches(
        sessionmaker, lambda session: TokenService(session).purge_dead(before, BATCH)
    )
    codes = await _in_batches(
        sessionmaker,
        lambda session: EnrolmentRepository(session).purge_dead_codes(before, BATCH),
    )
    refresh_tokens = await _in_batches(
        sessionmaker,
        lambda session: EnrolmentRepository(session).purge_dead_refresh_tokens(before, BATCH),
    )
    async with sessionmaker() as session, session.begin():
        assertion_ids = await ClientRepository(session).forget_jtis_before(now - CLOCK_SKEW)
        throttle = FailureThrottle(
            session,
            limit=settings.oauth_failure_limit,
            window_seconds=settings.oauth_failure_window_seconds,
        )
        failure_counts = await throttle.forget_old_windows(now)
    return Purged(access_tokens, codes, refresh_tokens, assertion_ids, failure_counts)


async def _in_batches(
    sessionmaker: async_sessionmaker[AsyncSession],
    purge: Callable[[AsyncSession], Awaitable[int]],
) -> int:
    """Run ``purge`` (one batch of at most BATCH rows) in transactions of its own until a
    batch comes short: how many rows it deleted in all."""
    deleted = 0
    while True:
        async with sessionmaker() as session, session.begin():
            count = await purge(session)
        deleted += count
        if count < BATCH:
            return deleted


async def _purge(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    purged = await purge_dead_credentials(sessionmaker, settings)
    if any(astuple(purged)):
        log.info("purged dead credentials: %s", purged)


def purging_in_background(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> AbstractAsyncContextManager[asyncio.Task[None] | None]:
    """Purge dead credentials now and every OUTCOMES_CREDENTIAL_PURGE_SECONDS while the app
    runs (never, when it is 0)."""
    if settings.credential_purge_seconds <= 0:
        return nullcontext()
    return repeating(
        "purging dead credentials",
        settings.credential_purge_seconds,
        partial(_purge, sessionmaker, settings),
        log,
    )
