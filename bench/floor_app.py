"""The stack floor: the cheapest observation write this stack can serve, as a reference.

`POST /api/v1/patients/{patient_id}/observations` with the service's own body model
(`ObservationCreate`), then one raw asyncpg INSERT into ``bench_observations`` (autocommit:
one round trip) and a two-field JSON answer. No authentication, audit, idempotency, policy,
middleware or SQLAlchemy. Served by uvicorn exactly as the service is (same loop, HTTP parser
and worker count) and driven by the same wrk script, it says how much of `ingest_single`'s
distance to the database's limit is the framework itself (bench/README.md, "stack_floor").

Run by `make bench` (bench/run.py); ``BENCH_FLOOR_DSN`` names the database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Response

from app.core.db import utcnow
from app.observations.schemas import ObservationCreate
from bench.db_limit import INSERT


def create_app() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # 16 connections a worker: the service's pool size (10 + 10 overflow) is of that order.
        app.state.pool = await asyncpg.create_pool(
            os.environ["BENCH_FLOOR_DSN"], min_size=16, max_size=16
        )
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/readyz")
    async def readyz() -> Response:
        return Response(status_code=200)

    @app.post("/api/v1/patients/{patient_id}/observations", status_code=201)
    async def record(patient_id: uuid.UUID, body: ObservationCreate) -> dict[str, Any]:
        observation_id = body.id or uuid.uuid4()
        await app.state.pool.execute(
            INSERT, observation_id, patient_id, body.instrument, body.value, body.recorded_at,
            utcnow(), body.course_id, body.session_id, body.context, body.source, body.note,
        )  # fmt: skip
        return {"id": observation_id, "patient_id": patient_id}

    return app
