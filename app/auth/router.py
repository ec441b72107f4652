from __future__ import annotations

import uuid
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Request, Response, status

from app.auth.access import PrincipalDep
from app.auth.rules import AccessRecord
from app.auth.schemas import MeRead, Role, TokenCreate, TokenIssued, TokenList, TokenRead
from app.auth.service import TokenService
from app.auth.state import auth_state
from app.core.db import SessionDep

router = APIRouter(prefix="/tokens", tags=["tokens"])
me_router = APIRouter(tags=["tokens"])


async def get_token_service(request: Request, session: SessionDep) -> TokenService:
    return TokenService(session, auth_state(request).token_cache)


ServiceDep = Annotated[TokenService, Depends(get_token_service)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TokenIssued)
async def create_token(body: TokenCreate, service: ServiceDep) -> TokenIssued:
    """Issue a token (admins). The token is in this response only."""
    issued = await service.issue(body.role, body.patient_id, body.expires_in_days)
    row = issued.row
    return TokenIssued(
        id=row.id,
        token=issued.token,
        role=body.role,
        patient_id=row.patient_id,
        expires_at=row.expires_at,
    )


@router.get("", response_model=TokenList)
async def list_tokens(service: ServiceDep) -> TokenList:
    """Every token's metadata (admins), to find the one to revoke; never the secrets."""
    return TokenList(items=[TokenRead.model_validate(t) for t in await service.list()])


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def revoke_token(token_id: uuid.UUID, service: ServiceDep) -> Response:
    """Revoke a token at once (admins)."""
    await service.revoke(token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@me_router.get("/me", response_model=MeRead)
async def me(request: Request, principal: PrincipalDep) -> MeRead:
    """The token this request carries: its role, scopes, expiry, and the patient, client or
    device it is bound to. Any valid token may ask."""
    # Audited like a read of the token: its row names the token, and the patient a patient
    # token is bound to.
    access: AccessRecord = request.state.access
    access.resource_id = str(principal.token_id)
    access.patient_id = principal.patient_id
    return MeRead(
        role=cast(Role, principal.role),  # a stored role is one of them
        scope=principal.scope,
        patient_id=principal.patient_id,
        client_id=principal.client_id,
        device_id=principal.device_id,
        expires_at=principal.expires_at,
    )
