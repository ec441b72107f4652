"""The SQL of registered clients."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.oauth.models import OAuthClient


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
