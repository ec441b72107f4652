"""Issuing, revoking and resolving bearer tokens."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.errors import TokenNotFound, Unauthenticated
from app.auth.models import ApiToken
from app.auth.revocations import notify_revoked
from app.auth.tokens import new_token, token_hash
from app.core import pg
from app.core.db import utcnow
from app.core.errors import Unprocessable
from app.patients.service import PatientService


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: what the access rules and the audit trail need, nothing more."""

    token_id: uuid.UUID
    role: str
    patient_id: uuid.UUID | None
    expires_at: datetime | None


class TokenCache:
    """A bounded cache of resolved tokens, so most requests skip the token query.

    Entries live ``ttl`` seconds: a revocation elsewhere (another worker or machine) takes
    effect within that time, and at once in the process that revoked it (``forget``). While
    the process hears every revocation as it commits (PostgreSQL: app/auth/revocations.py,
    ``listening``), entries live ``pushed_ttl`` seconds instead: a revocation then takes effect
    at once everywhere, and the TTL only bounds what an unnoticed failure could cost.
    Unknown tokens are never cached, so guessing cannot fill it.
    """

    def __init__(self, ttl: float = 1.0, size: int = 10_000, pushed_ttl: float = 0) -> None:
        self.ttl = ttl
        self.pushed_ttl = pushed_ttl
        self.size = size
        self.listening = False
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: str) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        stored_at, principal = entry
        ttl = self.pushed_ttl if self.listening and self.pushed_ttl > 0 else self.ttl
        if time.monotonic() - stored_at > ttl:
            del self._entries[digest]
            return None
        return principal

    def put(self, digest: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        self._entries[digest] = (time.monotonic(), principal)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def forget(self, token_id: uuid.UUID) -> None:
        for digest in [d for d, (_, p) in self._entries.items() if p.token_id == token_id]:
            del self._entries[digest]

    def clear(self) -> None:
        self._entries.clear()

    def hear_revocations(self, listening: bool) -> None:
        """Start or stop trusting entries for ``pushed_ttl``. Either way the cache is emptied:
        a revocation may have gone unheard while the process was not listening."""
        self.listening = listening
        self.clear()


# Built once: this query runs on every request the cache misses; on PostgreSQL it runs on the
# plain asyncpg pool (app/core/pg.py) as _RESOLVE_SQL, the same query written out.
_RESOLVE = select(ApiToken.id, ApiToken.role, ApiToken.patient_id, ApiToken.expires_at).where(
    ApiToken.token_hash == bindparam("digest"), ApiToken.revoked_at.is_(None)
)
_RESOLVE_SQL = (
    "SELECT id, role, patient_id, expires_at FROM api_tokens"
    " WHERE token_hash = $1 AND revoked_at IS NULL"
)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str  # shown once, never stored
    row: ApiToken


class TokenService:
    def __init__(
        self, session: AsyncSession, cache: TokenCache | None = None, pool: pg.Pool | None = None
    ) -> None:
        self.session = session
        self.cache = cache
        self.pool = pool  # PostgreSQL: look tokens up outside the request's session

    async def issue(
        self, role: str, patient_id: uuid.UUID | None = None, expires_in_days: float | None = None
    ) -> IssuedToken:
        if (
            patient_id is not None
            and await PatientService(self.session).repo.get(patient_id) is None
        ):
            raise Unprocessable.at(["body", "patient_id"], "no patient with this id")
        token = new_token()
        now = utcnow()
        row = ApiToken(
            token_hash=token_hash(token),
            role=role,
            patient_id=patient_id,
            created_at=now,
            expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
        )
        self.session.add(row)
        await self.session.flush()
        return IssuedToken(token, row)

    async def revoke(self, token_id: uuid.UUID) -> None:
        result = await self.session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .returning(ApiToken.id)
        )
        if result.first() is None and await self.session.get(ApiToken, token_id) is None:
            raise TokenNotFound(f"No token with id {token_id}.")
        if self.session.get_bind().dialect.name == "postgresql":
            # Every listening process forgets the token when (and only if) this commits.
            await notify_revoked(self.session, token_id)
        cache = self.cache
        if cache is not None:
            cache.forget(token_id)
            # Until the revocation commits, a concurrent request still reads the token as valid
            # and may cache it again: forget it once more when the commit has happened.
            event.listen(
                self.session.sync_session,
                "after_commit",
                lambda _s: cache.forget(token_id),
                once=True,
            )

    async def list(self) -> list[ApiToken]:
        stmt = select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
        return list((await self.session.scalars(stmt)).all())

    async def resolve(self, token: str) -> Principal:
        """The principal behind a presented token, or 401 (unknown, revoked or expired)."""
        digest = token_hash(token)
        principal = self.cache.get(digest) if self.cache is not None else None
        if principal is None:
            row = await self._lookup(digest)
            if row is None:
                raise Unauthenticated("The bearer token is not valid or has been revoked.")
            principal = Principal(*row)
            if self.cache is not None:
                self.cache.put(digest, principal)
        if principal.expires_at is not None and principal.expires_at <= utcnow():
            raise Unauthenticated("The bearer token has expired.")
        return principal

    async def _lookup(self, digest: str) -> Sequence[Any] | None:
        """(id, role, patient_id, expires_at) of a valid token with this digest, or None."""
        if self.pool is not None:
            async with pg.connection(self.pool) as conn:
                record = await conn.fetchrow(_RESOLVE_SQL, digest)
            return tuple(record) if record is not None else None
        return (await self.session.execute(_RESOLVE, {"digest": digest})).first()

    async def any_admin(self) -> bool:
        stmt = select(ApiToken.id).where(ApiToken.role == "admin", ApiToken.revoked_at.is_(None))
        return (await self.session.scalar(stmt.limit(1))) is not None
