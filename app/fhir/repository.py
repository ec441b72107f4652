"""The queries behind FHIR reads: plain filters on the domain's tables, no FHIR types.

Each FHIR resource type is one "section" (a table, its lastUpdated column and its patient
column). A page is one query per section it touches; the total is one query for all of them.
Rows are ordered by (lastUpdated, id): new and changed records join the end of a result, so a
client paging through an incremental pull while others write misses nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import SQLORMExpression

from app.courses.models import Course
from app.fhir.mapping import Row
from app.fhir.search import SearchQuery
from app.observations.models import Observation
from app.patients.models import Patient
from app.treatment_sessions.models import TreatmentSession


@dataclass(frozen=True, slots=True)
class Section:
    resource_type: str
    model: type[Patient | Course | TreatmentSession | Observation]
    id: SQLORMExpression[uuid.UUID]
    stamp: SQLORMExpression[datetime]  # meta.lastUpdated
    patient: SQLORMExpression[uuid.UUID]
    instrument: SQLORMExpression[str] | None = None  # Observation's, for `code`


SECTIONS: dict[str, Section] = {
    "Patient": Section("Patient", Patient, Patient.id, Patient.updated_at, Patient.id),
    "CarePlan": Section("CarePlan", Course, Course.id, Course.updated_at, Course.patient_id),
    "Procedure": Section(
        "Procedure",
        TreatmentSession,
        TreatmentSession.id,
        TreatmentSession.created_at,
        TreatmentSession.patient_id,
    ),
    "Observation": Section(
        "Observation",
        Observation,
        Observation.id,
        Observation.received_at,
        Observation.patient_id,
        Observation.instrument,
    ),
}


def conditions(section: Section, query: SearchQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.patient_id is not None:
        where.append(section.patient == query.patient_id)
    if query.instruments is not None and section.instrument is not None:
        where.append(section.instrument.in_(sorted(query.instruments)))
    for bound in query.last_updated:
        where.append(section.stamp >= bound.at if bound.op == ">=" else section.stamp < bound.at)
    return where


class FhirRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def patient(self, patient_id: uuid.UUID) -> Patient | None:
        return await self.session.get(Patient, patient_id)

    async def counts(self, sections: Sequence[Section], query: SearchQuery) -> dict[str, int]:
        """How many rows match in each section, in one statement."""
        if query.matches_nothing:
            return {section.resource_type: 0 for section in sections}
        columns = [
            select(func.count())
            .select_from(section.model)
            .where(*conditions(section, query))
            .scalar_subquery()
            .label(section.resource_type)
            for section in sections
        ]
        row = (await self.session.execute(select(*columns))).one()
        return {
            section.resource_type: int(value) for section, value in zip(sections, row, strict=True)
        }

    async def page(
        self,
        section: Section,
        query: SearchQuery,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Row]:
        stmt: Any = select(section.model).where(*conditions(section, query))
        if after is not None:
            stmt = stmt.where(tuple_(section.stamp, section.id) > tuple_(*after))
        stmt = stmt.order_by(section.stamp, section.id).limit(limit)
        return list((await self.session.scalars(stmt)).all())
