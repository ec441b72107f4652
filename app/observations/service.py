"""Reading observations and the instrument catalogue. Recording them is the recording
pipeline's (app/recording/service.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Unprocessable
from app.observations.catalogue import CATALOGUE, Instrument
from app.observations.models import Observation
from app.observations.repository import ObservationRepository


def list_instruments() -> Sequence[Instrument]:
    return CATALOGUE


class ObservationService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = ObservationRepository(session)

    async def page(
        self,
        patient_id: uuid.UUID,
        *,
        instrument: str | None,
        since: datetime | None,
        until: datetime | None,
        course_id: uuid.UUID | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Observation], str | None]:
        if since is not None and until is not None and until <= since:
            raise Unprocessable.at(["query", "until"], "must be later than since")
        return await self.repo.page(
            patient_id,
            instrument=instrument,
            since=since,
            until=until,
            course_id=course_id,
            limit=limit,
            cursor=cursor,
        )
