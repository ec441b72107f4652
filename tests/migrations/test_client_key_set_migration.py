"""Migration 0011: a client has its keys or the URL of its key set, one or the other (a CHECK
the database keeps); going back to 0010, which has no URL, revokes the clients that have only
one (and their tokens), and leaves the others as they were. On both databases."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.auth.models import ApiToken
from app.core.config import to_async_url
from app.core.db import table_of
from app.oauth.models import OAuthClient
from tests.migrations.support import drop_scratch, scratch_database
from tests.support import migrate

NOW = datetime.now(UTC)
CLIENTS, TOKENS = table_of(OAuthClient), table_of(ApiToken)
KEYS = {"keys": [{"kty": "EC", "crv": "P-384", "kid": "k", "x": "x" * 64, "y": "y" * 64}]}


def _client(client_id: uuid.UUID, **source: Any) -> dict[str, Any]:
    return {
        "id": client_id,
        "name": "EHR",
        "role": "integration",
        "scope": "system/*.rs",
        "created_at": NOW,
        "jwks": None,
        "jwks_url": None,
    } | source


def _token(client_id: uuid.UUID) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "token_hash": uuid.uuid4().hex * 2,
        "role": "integration",
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=5),
        "client_id": client_id,
        "scope": "system/*.rs",
    }


async def _rows(engine: AsyncEngine, *columns: Any) -> dict[uuid.UUID, tuple[Any, ...]]:
    """The columns' values by the first one's, read through the tables' own column types (so
    naming only columns both versions have)."""
    async with engine.connect() as conn:
        return {row[0]: tuple(row[1:]) for row in await conn.execute(select(*columns))}


async def test_a_client_has_keys_or_a_url_and_going_back_revokes_those_with_a_url(
    database_url: str, tmp_path: object
) -> None:
    scratch, admin = await scratch_database(database_url, str(tmp_path))
    with_keys, with_url = uuid.uuid4(), uuid.uuid4()
    engine = create_async_engine(to_async_url(scratch))
    try:
        await asyncio.to_thread(migrate, scratch, "head")
        async with engine.begin() as conn:
            await conn.execute(insert(CLIENTS).values(**_client(with_keys, jwks=KEYS)))
            url = "https://ehr.example/jwks.json"
            await conn.execute(insert(CLIENTS).values(**_client(with_url, jwks_url=url)))
            for client_id in (with_keys, with_url):
                await conn.execute(insert(TOKENS).values(**_token(client_id)))
        for source in ({}, {"jwks": KEYS, "jwks_url": url}):  # neither, both
            with pytest.raises(IntegrityError):
                async with engine.begin() as conn:
                    await conn.execute(insert(CLIENTS).values(**_client(uuid.uuid4(), **source)))

        await asyncio.to_thread(migrate, scratch, "0011", down=True)
        clients = await _rows(engine, CLIENTS.c.id, CLIENTS.c.jwks, CLIENTS.c.revoked_at)
        tokens = await _rows(engine, TOKENS.c.client_id, TOKENS.c.revoked_at)
        assert clients[with_keys] == (KEYS, None)
        assert clients[with_url][0] == {"keys": []}
        assert clients[with_url][1] is not None
        assert tokens[with_keys] == (None,)
        assert tokens[with_url][0] is not None

        await asyncio.to_thread(migrate, scratch, "head")
        urls = await _rows(engine, CLIENTS.c.id, CLIENTS.c.jwks_url)
        assert urls == {with_keys: (None,), with_url: (None,)}
    finally:
        await engine.dispose()
        await drop_scratch(scratch, admin)
