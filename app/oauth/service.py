"""Registering, listing and revoking clients (SMART Backend Services: an EHR, a Bulk Data
client, a dashboard backend), and finding the one an assertion names."""

from __future__ import annotations

import uuid

from app.auth.models import ApiToken
from app.auth.service import TokenService
from app.core.db import utcnow
from app.core.errors import NotFound, Unprocessable, describe
from app.oauth import jwks
from app.oauth.models import OAuthClient
from app.oauth.repository import ClientRepository
from app.oauth.schemas import ClientCreate


class ClientNotFound(NotFound):
    pass


class ClientService:
    def __init__(self, repo: ClientRepository) -> None:
        self.repo = repo

    async def register(self, body: ClientCreate) -> OAuthClient:
        """A new client with its public keys: a 422 naming each key that is not a real public
        key of the kinds accepted, or whose kid another key has."""
        keys = body.jwks.model_dump(exclude_none=True)["keys"]
        errors = jwks.problems(keys)
        if errors:
            raise Unprocessable(describe(errors), errors)
        row = OAuthClient(
            name=body.name,
            role=body.role,
            scope=body.scope,
            jwks={"keys": keys},
            created_at=utcnow(),
        )
        self.repo.session.add(row)
        await self.repo.session.flush()
        return row

    async def page(self, limit: int, cursor: str | None) -> tuple[list[OAuthClient], str | None]:
        return await self.repo.page(limit, cursor)

    async def revoke(self, client_id: uuid.UUID, tokens: TokenService) -> None:
        """The client can no longer authenticate, and every token it was issued stops at once,
        in every process (TokenService.revoke_where). Revoking it again changes nothing."""
        row = await self.repo.get(client_id)
        if row is None:
            raise ClientNotFound(f"No client with id {client_id}.")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        await tokens.revoke_where(ApiToken.client_id == client_id)

    async def active(self, client_id: uuid.UUID) -> OAuthClient | None:
        """The client, unless it is unknown or revoked."""
        row = await self.repo.get(client_id)
        return row if row is not None and row.revoked_at is None else None
