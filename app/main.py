"""The ASGI application: ``create_app()`` wires settings, database, routers and error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import ops
from app.analytics.registry import policies
from app.analytics.router import router as analytics_router
from app.audit.router import router as audit_router
from app.auth.access import authorize
from app.auth.router import router as tokens_router
from app.auth.service import TokenCache
from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.errors import PROBLEM_MEDIA_TYPE, install_error_handlers
from app.core.telemetry import TelemetryMiddleware
from app.courses.router import router as courses_router
from app.observations.router import router as observations_router
from app.patients.router import router as patients_router
from app.summary.router import router as summary_router
from app.treatment_sessions.router import router as sessions_router

DESCRIPTION = """
Outcomes tracks how patients respond to a course of ozone infiltrations: pain scores and
mobility measures, session logs, and the course's session frequency.

Errors are RFC 9457 `application/problem+json` with an `errors` list naming each field.
"""

_problem = {"description": "Problem details (RFC 9457)", "content": {PROBLEM_MEDIA_TYPE: {}}}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        policies()  # a broken policy file stops the start, not a later request
        # The engine belongs to the running app, not to the import.
        engine = create_engine(settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="Outcomes API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses={422: _problem},
    )
    app.state.settings = settings
    app.state.token_cache = TokenCache(ttl=settings.token_cache_seconds)
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    app.add_middleware(TelemetryMiddleware)

    # One access decision for every business route (app/auth/rules.py says who may do what).
    api = APIRouter(
        prefix="/api/v1",
        dependencies=[Depends(authorize)],
        responses={401: _problem, 403: _problem, 404: _problem},
    )
    api.include_router(observations_router)  # also serves /instruments
    api.include_router(patients_router)
    api.include_router(courses_router)
    api.include_router(sessions_router)
    api.include_router(analytics_router)
    api.include_router(summary_router)
    api.include_router(tokens_router)
    api.include_router(audit_router)
    app.include_router(api)
    app.include_router(ops.router)
    return app
