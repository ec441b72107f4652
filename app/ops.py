"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from app.core.errors import PROBLEM_MEDIA_TYPE, AppError
from app.core.migrations import schema_state
from app.core.state import app_state
from app.core.telemetry import render_metrics


class Health(BaseModel):
    status: str


class NotReady(AppError):
    status = 503
    slug = "not-ready"
    title = "Service unavailable"


router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up (does not touch the database)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={
        503: {
            "description": "Database unreachable, or its schema not at the latest",
            "content": {PROBLEM_MEDIA_TYPE: {}},  # the Problem schema (app/main.py)
        }
    },
)
async def readyz(request: Request) -> Health:
    """The service can reach its database, and the database's schema is the one this version
    of the service was written for (every migration applied)."""
    try:
        state = await schema_state(app_state(request).engine)
    except (SQLAlchemyError, OSError) as exc:
        raise NotReady("The database is unreachable.") from exc
    if not state.at_head:
        description = state.describe()
        raise NotReady(description[0].upper() + description[1:] + ".")
    return Health(status="ready")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus exposition format"}},
)
async def metrics() -> Response:
    """Request counts and latencies by route template (no identifiers, no PHI)."""
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
