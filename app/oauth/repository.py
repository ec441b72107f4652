"""The SQL of registered clients and of their assertions' `jti` (the replay store)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Insert, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import table_of
from app.core.pagination import paginate
from app.oauth.models import ClientAssertion, OAuthClient

_ASSERTIONS = table_of(ClientAssertion)
# A jti is taken once: the INSERT answers its row, or none when the pair was there already
# (on PostgreSQL a concurrent first use is waited for, then counts as there).
_TAKE_JTI: dict[str, Insert] = {
    dialect.dialect.name: dialect.insert(_ASSERTIONS)
    .on_conflict_do_nothing(index_elements=[_ASSERTIONS.c.client_id, _ASSERTIONS.c.jti])
    .returning(_ASSERTIONS.c.jti)
    for dialect in (postgresql, sqlite)
}


class ClientRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, client_id: uuid.UUID) -> OAuthClient | None:
        return await self.session.get(OAuthClient, client_id)

    async def page(self, limit: int, cursor: str | None) -> tuple[list[OAuthClient], str | None]:
        return await paginate(
            self.session,
            select(OAuthClient),
            [OAuthClient.created_at, OAuthClient.id],
            limit,
            cursor,
        )

    async def take_jti(self, client_id: uuid.UUID, jti: str, expires_at: datetime) -> bool:
        """Record an assertion's jti; False when this client has used it before."""
        dialect = self.session.get_bind().dialect.name
        stmt = _TAKE_JTI[dialect].values(client_id=client_id, jti=jti, expires_at=expires_at)
        return (await self.session.execute(stmt)).first() is not None

    async def forget_jtis_before(self, moment: datetime) -> int:
        """Assertions that expired before ``moment`` can no longer be replayed: forget them
        (how many)."""
        result = await self.session.execute(
            delete(ClientAssertion).where(ClientAssertion.expires_at < moment)
        )
        return cast(CursorResult[Any], result).rowcount
