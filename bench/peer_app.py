"""The framework peer (issue 21): a typical FastAPI + SQLAlchemy ORM insert endpoint, as a
team would write it from the two projects' tutorials, with no authentication, no audit, no
policy and no idempotency.

`POST /api/v1/patients/{patient_id}/observations` takes the same JSON body (a pydantic model
of its own), adds an ORM object on a request-scoped ``AsyncSession`` (asyncpg), commits,
refreshes it and answers it through a response model. Its table ``peer_observations`` has the
observations' columns and indexes (no triggers, no foreign keys): the same rows and index
work per insert. Served by uvicorn exactly as the service is (same worker count, same wrk
script and patients), it is the peer the service's single POST is compared with
(bench/README.md, "peer").

``BENCH_PEER_URL`` names the database (a SQLAlchemy URL); ``create_table`` makes its table
before the workers start.
"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import DateTime, Float, Index, String, Text, Uuid
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class PeerObservation(Base):
    __tablename__ = "peer_observations"
    __table_args__ = (
        Index("ix_peer_observations_patient_instrument", "patient_id", "instrument", "recorded_at"),
        Index("ix_peer_observations_patient_recorded", "patient_id", "recorded_at"),
        Index("ix_peer_observations_received", "received_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    instrument: Mapped[str] = mapped_column(String(40))
    value: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(UTC)
    )
    course_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    session_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    context: Mapped[str | None] = mapped_column(String(10))
    source: Mapped[str | None] = mapped_column(String(10))
    note: Mapped[str | None] = mapped_column(Text)


class ObservationIn(BaseModel):
    id: uuid.UUID | None = None
    instrument: str = Field(max_length=40)
    value: float
    recorded_at: datetime
    course_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    context: Literal["rest", "movement", "night", "morning"] | None = None
    source: Literal["patient", "clinician", "device"] | None = None
    note: str | None = Field(None, max_length=2000)


class ObservationOut(ObservationIn):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    patient_id: uuid.UUID
    received_at: datetime


def create_app() -> FastAPI:
    engine = create_async_engine(os.environ["BENCH_PEER_URL"], pool_size=10, max_overflow=10)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    app = FastAPI(lifespan=lifespan)

    @app.get("/readyz")
    async def readyz() -> Response:
        return Response(status_code=200)

    @app.post(
        "/api/v1/patients/{patient_id}/observations",
        status_code=201,
        response_model=ObservationOut,
    )
    async def record(
        patient_id: uuid.UUID,
        body: ObservationIn,
        session: Annotated[AsyncSession, Depends(get_session)],
    ) -> PeerObservation:
        observation = PeerObservation(**body.model_dump(exclude_none=True), patient_id=patient_id)
        session.add(observation)
        await session.commit()
        await session.refresh(observation)
        return observation

    return app


async def create_table(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
    finally:
        await engine.dispose()
