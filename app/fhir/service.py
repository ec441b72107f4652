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
    total: int
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
        self, resource_type: str, query: SearchQuery, links: Links, now: datetime
    ) -> Resource:
        page = await self._page([SECTIONS[resource_type]], query)
        return self._bundle(page, query, links, now)

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

    async def _page(self, sections: Sequence[Section], query: SearchQuery) -> Page:
        """One page across ``sections`` in order: up to ``query.count`` rows, starting where
        the cursor points; the total over all of them."""
        counts = await self.repository.counts(sections, query)
        total = sum(counts.values())
        names = [section.resource_type for section in sections]
        if query.count == 0:
            return Page([], total, None)  # `_count=0`: the total alone
        start, after_at, after_id = (
            decode_cursor(query.cursor, names) if query.cursor else (names[0], None, None)
        )
        rows: list[Row] = []
        remaining = query.count
        first = names.index(start)
        for index in range(first, len(sections)):
            section = sections[index]
            if counts[section.resource_type] == 0:
                continue
            if remaining == 0:
                return Page(rows, total, encode_cursor(section.resource_type, None, None))
            after = (after_at, after_id) if index == first and after_at and after_id else None
            fetched = await self.repository.page(section, query, after, remaining + 1)
            if len(fetched) > remaining:
                rows += fetched[:remaining]
                last = rows[-1]
                cursor = encode_cursor(section.resource_type, mapping.last_updated(last), last.id)
                return Page(rows, total, cursor)
            rows += fetched
            remaining -= len(fetched)
        return Page(rows, total, None)

    def _bundle(self, page: Page, query: SearchQuery, links: Links, now: datetime) -> Resource:
        def to_fhir(row: Row) -> Resource:
            return mapping.to_fhir(row, identifier_system=self.identifier_system)

        return mapping.searchset(
            base_url=links.base_url,
            resources=[to_fhir(row) for row in page.rows],
            total=page.total,
            self_url=links.page(query, query.cursor),
            next_url=links.page(query, page.next_cursor) if page.next_cursor else None,
            now=now,
        )
