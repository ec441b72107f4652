from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.audit.schemas import AuditEventRead
from app.audit.service import AuditRepository
from app.core.db import SessionDep
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.schemas import Timestamp

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=Page[AuditEventRead])
async def list_audit_events(
    session: SessionDep,
    patient_id: Annotated[uuid.UUID | None, Query()] = None,
    since: Annotated[
        Timestamp | None, Query(description="RFC 3339 with offset, inclusive.")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[AuditEventRead]:
    """The audit trail, oldest first (admins)."""
    rows, next_cursor = await AuditRepository(session).page(
        patient_id=patient_id, since=since, limit=limit, cursor=cursor
    )
    return Page(items=[AuditEventRead.model_validate(r) for r in rows], next_cursor=next_cursor)
