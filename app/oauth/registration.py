"""`/api/v1/clients`: admins register the systems that authenticate with a signed JWT (SMART
Backend Services), list them, and revoke them (their tokens stop at once)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from app.audit.service import audit_resource
from app.auth.service import TokenService
from app.auth.state import auth_state
from app.core.db import SessionDep
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.state import app_state
from app.oauth.repository import ClientRepository
from app.oauth.schemas import ClientCreate, ClientRead
from app.oauth.service import ClientService

router = APIRouter(prefix="/clients", tags=["clients"])


async def get_client_service(session: SessionDep) -> ClientService:
    return ClientService(ClientRepository(session))


ServiceDep = Annotated[ClientService, Depends(get_client_service)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ClientRead)
async def register_client(request: Request, body: ClientCreate, service: ServiceDep) -> ClientRead:
    """Register a client's public keys, or the URL it publishes them at (admins). It
    authenticates at `POST /oauth/token` with a JWT signed by one of them; its tokens never
    get more than `scope`, nor more than `role` allows."""
    row = await service.register(body, app_state(request).settings.jwks_http_hosts)
    audit_resource(request, row.id)
    return ClientRead.of(row)


@router.get("", response_model=Page[ClientRead])
async def list_clients(
    service: ServiceDep, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[ClientRead]:
    """Every registered client, oldest first, revoked ones included (admins)."""
    rows, next_cursor = await service.page(limit, cursor)
    return Page(items=[ClientRead.of(row) for row in rows], next_cursor=next_cursor)


@router.delete("/{client_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def revoke_client(
    client_id: uuid.UUID, request: Request, session: SessionDep, service: ServiceDep
) -> Response:
    """Revoke a client (admins): it can no longer get tokens, and the tokens it has stop at
    once in every process. Revoking it again is a 204 too."""
    await service.revoke(client_id, TokenService(session, auth_state(request).token_cache))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
