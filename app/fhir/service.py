"""FHIR reads: resolve the rows a request asks for, page them, map them, wrap them in a Bundle."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound
from app.fhir import mapping
from app.fhir.mapping import Resource, Row
from app.fhir.repository import SECTIONS, FhirRepository, Section
from app.fhir.search import SearchQuery, decode_cursor, encode_cursor
from app.patients.models import Patient

# `$everything`: the patient first, then what hangs off it, each in lastUpdated order.
EVERYTHING = ("Patient", "CarePlan", "Procedure", "Observation")


class FhirPatientNotFound(NotFound):
    pass


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Row]
    total: int | None  # None: not counted (`_total=none`)
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Links:
    """Where the server is (`…/fhir/R4`) and the URL of this search without its query."""

    base_url: str
    search_url: str

    def page(self, query: SearchQuery, cursor: str | None) -> str:
        params = [*query.echo, ("_count", str(query.count))]
        if cursor is not None:
            params.append(("_cursor", cursor))
        return f"{self.search_url}?{urlencode(params)}"


class FhirService:
    def __init__(self, session: AsyncSession, *, identifier_system: str) -> None:
        self.repository = FhirRepository(session)
        self.identifier_system = identifier_system

    async def patient(self, raw_id: str) -> Resource:
        return mapping.patient_to_fhir(
            await self._patient(raw_id), identifier_system=self.identifier_system
        )

    async def search(
        self,
        resource_type: str,
        query: SearchQuery,
        links: Links,
        now: datetime,
        *,
        compartment: uuid.UUID | None = None,
    ) -> Resource:
        """A searchset Bundle; with a ``compartment`` (a patient token's patient), only that
        patient's resources match, whatever the query names."""
        if compartment is not None:
            query = replace(query, patient_id=compartment)
        page = await self._page([SECTIONS[resource_type]], query)
        included: list[Row] = []
        if query.include_patients and page.rows:
            included = await self._patients_of(page.rows)
        return self._bundle(page, query, links, now, included)

    async def everything(
        self, raw_id: str, query: SearchQuery, links: Links, now: datetime
    ) -> Resource:
        patient = await self._patient(raw_id)
        page = await self._page(
            [SECTIONS[name] for name in EVERYTHING], replace(query, patient_id=patient.id)
        )
        return self._bundle(page, query, links, now)

    async def _patient(self, raw_id: str) -> Patient:
        try:
            patient_id = uuid.UUID(raw_id)
        except ValueError:
            patient_id = None  # a FHIR id, but not one this server issues
        patient = await self.repository.patient(patient_id) if patient_id else None
        if patient is None:
            raise FhirPatientNotFound(f"Patient/{raw_id} is not known.")
        return patient

    async def _patients_of(self, rows: Sequence[Row]) -> list[Row]:
        """`_include=<type>:patient`: the patients ``rows`` refer to, once each, in the order
        they are first referred to (one statement)."""
        wanted = list(
            dict.fromkeys(row.id if isinstance(row, Patient) else row.patient_id for row in rows)
        )
        found = {patient.id: patient for patient in await self.repository.patients(wanted)}
        return [found[patient_id] for patient_id in wanted if patient_id in found]

    async def _page(self, sections: Sequence[Section], query: SearchQuery) -> Page:
        """One page across ``sections`` in order: up to ``query.count`` rows, starting where
        the cursor points, in the query's order; the total over all of them (unless the
        query asks for none)."""
        counts = await self.repository.counts(sections, query) if query.total else None
        total = sum(counts.values()) if counts is not None else None
        names = [section.resource_type for section in sections]
        if query.count == 0 or query.summary_count or query.matches_nothing:
            return Page([], total, None)  # `_count=0`, `_summary=count`: the total alone
        start, after_at, after_id = (
            decode_cursor(query.cursor, names) if query.cursor else (names[0], None, None)
        )
        rows: list[Row] = []
        remaining = query.count
        first = names.index(start)
        for index in range(first, len(sections)):
            section = sections[index]
            if counts is not None and counts[section.resource_type] == 0:
                continue
            if remaining == 0:
                return Page(
                    rows, total, encode_cursor(section.resource_type, None, None, query.sort)
                )
            after = (after_at, after_id) if index == first and after_at and after_id else None
            fetched = await self.repository.page(section, query, after, remaining + 1)
            if len(fetched) > remaining:
                rows += fetched[:remaining]
                moment, row_id = section.position(rows[-1], query.sort)
                cursor = encode_cursor(section.resource_type, moment, row_id, query.sort)
                return Page(rows, total, cursor)
            rows += fetched
            remaining -= len(fetched)
        return Page(rows, total, None)

    def _bundle(
        self,
        page: Page,
        query: SearchQuery,
        links: Links,
        now: datetime,
        included: Sequence[Row] = (),
    ) -> Resource:
        def to_fhir(row: Row) -> Resource:
            return mapping.to_fhir(row, identifier_system=self.identifier_system)

        return mapping.searchset(
            base_url=links.base_url,
            resources=[to_fhir(row) for row in page.rows],
            included=[to_fhir(row) for row in included],
            total=page.total,
            self_url=links.page(query, query.cursor),
            next_url=links.page(query, page.next_cursor) if page.next_cursor else None,
            now=now,
        )
