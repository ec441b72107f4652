"""Registering, listing and revoking clients (SMART Backend Services: an EHR, a Bulk Data
client, a dashboard backend), and finding the one an assertion names."""

from __future__ import annotations

import uuid
from typing import Any

from app.auth.models import ApiToken
from app.auth.service import TokenService
from app.core.db import utcnow
from app.core.errors import NotFound, Unprocessable, describe
from app.core.outbound import http_refused, outbound_url_problem
from app.oauth import jwks
from app.oauth.models import OAuthClient
from app.oauth.repository import ClientRepository
from app.oauth.schemas import ClientCreate

# Key sets are fetched over http (not https) only from the hosts this setting lists.
JWKS_HOSTS_SETTING = "OUTCOMES_OAUTH_JWKS_ALLOWED_HOSTS"
JWKS_HTTP_REFUSED = http_refused(JWKS_HOSTS_SETTING)


class ClientNotFound(NotFound):
    pass


class ClientService:
    def __init__(self, repo: ClientRepository) -> None:
        self.repo = repo

    async def register(self, body: ClientCreate, jwks_http_hosts: frozenset[str]) -> OAuthClient:
        """A new client with its public keys, or the URL it publishes them at: a 422 naming
        each key that is not a real public key of the kinds accepted, or whose kid another key
        has; or naming a URL this deployment may not call (https, or http to
        ``jwks_http_hosts``). A URL's key set is fetched when an assertion needs it, not now
        (app/oauth/key_sets.py): it is the client's to change."""
        key_set: dict[str, Any] | None = None
        if body.jwks is not None:
            keys = body.jwks.model_dump(exclude_none=True)["keys"]
            errors = jwks.problems(keys)
            if errors:
                raise Unprocessable(describe(errors), errors)
            key_set = {"keys": keys}
        if body.jwks_url is not None:
            problem = outbound_url_problem(body.jwks_url, jwks_http_hosts, JWKS_HOSTS_SETTING)
            if problem is not None:
                raise Unprocessable.at(["body", "jwks_url"], problem)
        row = OAuthClient(
            name=body.name,
            role=body.role,
            scope=body.scope,
            jwks=key_set,
            jwks_url=body.jwks_url,
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
