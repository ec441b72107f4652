"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from app.core.db import utcnow
from app.core.errors import PROBLEM_MEDIA_TYPE, AppError
from app.core.migrations import schema_state
from app.core.state import app_state
from app.core.telemetry import render_metrics
from app.push.repository import PushRepository


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
async def metrics(request: Request) -> Response:
    """Request counts and latencies by route template (no identifiers, no PHI), and the
    outbox's size."""
    body, content_type = render_metrics()
    return Response(body + await _outbox_metrics(request), media_type=content_type)


async def _outbox_metrics(request: Request) -> bytes:
    """The push outbox, read from the database at each scrape (the same figures from every
    worker): deliveries and events waiting, deliveries failed, the oldest one waiting. Left
    out when the database does not answer: /metrics never fails for it."""
    try:
        async with app_state(request).read_sessionmaker() as session:
            pending, failed, oldest = await PushRepository(session).figures()
    except (SQLAlchemyError, OSError):
        return b""
    age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
    lines = [
        "# HELP outcomes_outbox_pending Events and deliveries not yet delivered nor failed.",
        "# TYPE outcomes_outbox_pending gauge",
        f"outcomes_outbox_pending {pending}",
        "# HELP outcomes_outbox_failed Deliveries that failed for good (resend them).",
        "# TYPE outcomes_outbox_failed gauge",
        f"outcomes_outbox_failed {failed}",
        "# HELP outcomes_outbox_oldest_pending_seconds Age of the oldest pending one.",
        "# TYPE outcomes_outbox_oldest_pending_seconds gauge",
        f"outcomes_outbox_oldest_pending_seconds {age:.3f}",
    ]
    return ("\n".join(lines) + "\n").encode()
