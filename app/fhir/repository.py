"""The queries behind FHIR reads: plain filters on the domain's tables, no FHIR types.

Each FHIR resource type is one "section" (a table, its lastUpdated column and its patient
column). A page is one query per section it touches; the total is one query for all of them.
Rows are ordered by (lastUpdated, id) unless the search sorts otherwise: new and changed
records join the end of a result, so a client paging through an incremental pull while others
write misses nothing. Every order ends with the id, so a page's last row is a position the
next page starts after (keyset paging, in either direction).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute, SQLORMExpression

from app.courses.models import Course
from app.fhir.mapping import Row
from app.fhir.search import SearchQuery, SortName, TimeBound
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
    effective: SQLORMExpression[datetime] | None = None  # Observation's, for `date`
    identifier: SQLORMExpression[str | None] | None = None  # Patient's, for `identifier`

    def order_column(self, sort: SortName) -> SQLORMExpression[datetime]:
        """The column a search in order ``sort`` runs along (then the id)."""
        if sort.lstrip("-") == "date":
            if self.effective is None:
                raise ValueError(f"{self.resource_type} has no `date` to sort by")
            return self.effective
        return self.stamp

    def position(self, row: Row, sort: SortName) -> tuple[datetime, uuid.UUID]:
        """Where ``row`` stands in order ``sort``: what a cursor after it holds."""
        column = cast("QueryableAttribute[datetime]", self.order_column(sort))  # a mapped one
        moment: datetime = getattr(row, column.key)
        return moment, row.id


SECTIONS: dict[str, Section] = {
    "Patient": Section(
        "Patient",
        Patient,
        Patient.id,
        Patient.updated_at,
        Patient.id,
        identifier=Patient.external_id,
    ),
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
        Observation.recorded_at,
    ),
}


def conditions(section: Section, query: SearchQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.patient_id is not None:
        where.append(section.patient == query.patient_id)
    if query.instruments is not None and section.instrument is not None:
        where.append(section.instrument.in_(sorted(query.instruments)))
    if section.identifier is not None:
        if query.external_ids is not None:
            where.append(section.identifier.in_(sorted(query.external_ids)))
        if query.with_external_id:
            where.append(section.identifier.is_not(None))
    if section.effective is not None:
        where += _within(section.effective, query.recorded)
    where += _within(section.stamp, query.last_updated)
    return where


def _within(
    column: SQLORMExpression[datetime], bounds: Sequence[TimeBound]
) -> list[ColumnElement[bool]]:
    return [column >= bound.at if bound.op == ">=" else column < bound.at for bound in bounds]


class FhirRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def patient(self, patient_id: uuid.UUID) -> Patient | None:
        return await self.session.get(Patient, patient_id)

    async def patients(self, patient_ids: Sequence[uuid.UUID]) -> list[Patient]:
        """The patients of ``patient_ids`` that exist, in one statement (in no set order)."""
        if not patient_ids:
            return []
        stmt = select(Patient).where(Patient.id.in_(sorted(set(patient_ids))))
        return list((await self.session.scalars(stmt)).all())

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
        """Up to ``limit`` rows in the search's order, after the position ``after``."""
        column = section.order_column(query.sort)
        descending = query.sort.startswith("-")
        stmt: Any = select(section.model).where(*conditions(section, query))
        if after is not None:
            key = tuple_(column, section.id)
            stmt = stmt.where(key < tuple_(*after) if descending else key > tuple_(*after))
        order = (column.desc(), section.id.desc()) if descending else (column, section.id)
        stmt = stmt.order_by(*order).limit(limit)
        return list((await self.session.scalars(stmt)).all())
