from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from app.core.db import SessionDep
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.treatment_sessions.schemas import SessionRead
from app.treatment_sessions.service import SessionService

router = APIRouter(prefix="/courses/{course_id}/sessions", tags=["sessions"])


async def get_session_service(session: SessionDep) -> SessionService:
    return SessionService(session)


ServiceDep = Annotated[SessionService, Depends(get_session_service)]


@router.get("", response_model=Page[SessionRead])
async def list_sessions(
    course_id: uuid.UUID, service: ServiceDep, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[SessionRead]:
    """Sessions of a course, oldest first (by `performed_at`)."""
    rows, next_cursor = await service.page_for_course(course_id, limit=limit, cursor=cursor)
    return Page(items=[SessionRead.model_validate(r) for r in rows], next_cursor=next_cursor)
