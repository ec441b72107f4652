"""Issuing, revoking and resolving bearer tokens."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    bindparam,
    delete,
    event,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.cache import TokenCache
from app.auth.errors import TokenNotFound, Unauthenticated
from app.auth.models import ApiToken
from app.auth.principal import Principal
from app.auth.revocations import notify_revoked
from app.auth.tokens import new_token, token_hash
from app.core import pg
from app.core.db import table_of, unreferenced, utcnow
from app.core.errors import Unprocessable
from app.patients.service import PatientService

# Built once: this query runs on every request the cache misses; on PostgreSQL it runs on the
# plain asyncpg pool (app/core/pg.py) as _RESOLVE_SQL, the same query written out.
_RESOLVE = select(
    ApiToken.id,
    ApiToken.role,
    ApiToken.patient_id,
    ApiToken.expires_at,
    ApiToken.scope,
    ApiToken.client_id,
    ApiToken.device_id,
).where(ApiToken.token_hash == bindparam("digest"), ApiToken.revoked_at.is_(None))
_RESOLVE_SQL = (
    "SELECT id, role, patient_id, expires_at, scope, client_id, device_id FROM api_tokens"
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

    async def issue_scoped(
        self,
        *,
        role: str,
        scope: str,
        lifetime: timedelta,
        patient_id: uuid.UUID | None = None,
        client_id: uuid.UUID | None = None,
        device_id: uuid.UUID | None = None,
    ) -> IssuedToken:
        """An access token issued at /oauth/token: short-lived, bounded by its SMART scopes as
        well as its role, naming the client or device it was issued to."""
        token = new_token()
        now = utcnow()
        row = ApiToken(
            token_hash=token_hash(token),
            role=role,
            patient_id=patient_id,
            created_at=now,
            expires_at=now + lifetime,
            scope=scope,
            client_id=client_id,
            device_id=device_id,
        )
        self.session.add(row)
        await self.session.flush()
        return IssuedToken(token, row)

    async def revoke(self, token_id: uuid.UUID) -> None:
        revoked = await self.revoke_where(ApiToken.id == token_id)
        if not revoked and await self.session.get(ApiToken, token_id) is None:
            raise TokenNotFound(f"No token with id {token_id}.")

    async def revoke_where(self, *conditions: ColumnElement[bool]) -> list[uuid.UUID]:
        """Revoke every live token matching ``conditions`` (a client's, a device's), at once in
        every process: the ids revoked."""
        result = await self.session.execute(
            update(ApiToken)
            .where(*conditions, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .returning(ApiToken.id)
        )
        token_ids = list(result.scalars().all())
        for token_id in token_ids:
            await self._forget_everywhere(token_id)
        return token_ids

    async def _forget_everywhere(self, token_id: uuid.UUID) -> None:
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

    async def purge_dead(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` tokens that expired, or were revoked, before ``before``, and
        that nothing refers to any more (an Idempotency-Key, an export job: those go on their
        own retention, then the token at a later purge): how many. Nothing needs telling: a
        token no longer found is refused as a dead one was."""
        dead = or_(ApiToken.expires_at < before, ApiToken.revoked_at < before)
        chosen = (
            select(ApiToken.id)
            .where(dead, *unreferenced(table_of(ApiToken)))
            .limit(limit)
            # PostgreSQL: processes purging at once take disjoint rows (no waits, no deadlock).
            .with_for_update(skip_locked=True)
        )
        result = await self.session.execute(
            delete(ApiToken)
            .where(ApiToken.id.in_(chosen))
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], result).rowcount

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
        """(id, role, patient_id, expires_at, scope, client_id, device_id) of a valid token
        with this digest, or None."""
        if self.pool is not None:
            async with pg.connection(self.pool) as conn:
                record = await conn.fetchrow(_RESOLVE_SQL, digest)
            return tuple(record) if record is not None else None
        return (await self.session.execute(_RESOLVE, {"digest": digest})).first()

    async def any_admin(self) -> bool:
        stmt = select(ApiToken.id).where(ApiToken.role == "admin", ApiToken.revoked_at.is_(None))
        return (await self.session.scalar(stmt.limit(1))) is not None
