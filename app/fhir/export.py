"""FHIR Bulk Data export (Bulk Data Access IG, v2): `$export` kick-off, status and files.

- Kick-off (`GET /fhir/R4/$export` or `/fhir/R4/Patient/$export`, `Prefer: respond-async`)
  stores a small job row (what was asked, by which token, and the transaction time) and
  answers 202 with the status URL in `Content-Location`.
- Status (`GET /fhir/R4/$export-status/{job_id}`): the files are produced on demand, so the
  job is complete at once and the answer is the manifest; `DELETE` cancels (forgets) it.
- Files (`GET /fhir/R4/$export-file/{job_id}/{resource_type}.ndjson`): one resource per line,
  streamed in keyset-ordered batches of ``export_batch_size`` rows, each read in a short
  transaction of its own. Nothing is built in memory, no connection is held between batches
  (no long statement for `statement_timeout` to cancel, no long SQLite lock), and any worker
  can serve any job: only the job row is shared.

What a file holds: resources whose `meta.lastUpdated` is at or after `_since` (when given).
Procedures and Observations are immutable, so those received up to the transaction time make
a stable snapshot whenever the file is downloaded. Patients and CarePlans change in place: they
are exported in their state at download time (one changed after the kick-off is included, with
its new `meta.lastUpdated`), rather than left out.

Only the token that started a job (or an admin) sees it; any other gets a 404. A job is
forgotten ``export_retention_hours`` after its kick-off (jobs past that are purged at the
next kick-off).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.access import PrincipalDep, authorize
from app.auth.principal import Principal
from app.auth.rules import AccessRecord
from app.core.config import Settings
from app.core.db import SessionDep, utcnow
from app.core.errors import NotFound
from app.core.state import app_state
from app.fhir import mapping
from app.fhir.models import ExportJob
from app.fhir.repository import SECTIONS, FhirRepository
from app.fhir.responses import FHIR_MEDIA_TYPE, FhirResponse
from app.fhir.search import (
    PARAMS,
    InvalidSearch,
    SearchQuery,
    TimeBound,
    admits,
    declared,
    parse_instant,
)

logger = logging.getLogger(__name__)

PREFIX = "/fhir/R4"
NDJSON_MEDIA_TYPE = "application/fhir+ndjson"
OUTPUT_FORMATS = frozenset({NDJSON_MEDIA_TYPE, "application/ndjson", "ndjson"})
# The order of a manifest's files; every type is in the Patient compartment.
EXPORT_TYPES = ("Patient", "CarePlan", "Procedure", "Observation")
ExportType = Literal["Patient", "CarePlan", "Procedure", "Observation"]
# Resources that never change once written: bounded above by the transaction time.
IMMUTABLE = frozenset({"Procedure", "Observation"})
KICK_OFF_PARAMS = frozenset({"_type", "_since", "_outputFormat"})
# What a kick-off accepts, as the OpenAPI schema declares it and parse_kick_off checks it.
_TYPE = f"(?:{'|'.join(EXPORT_TYPES)})"
TYPE_PATTERN = f"^{_TYPE}(?:,{_TYPE})*$"  # a comma-separated list of exportable types
# `Prefer` is a list of preferences (RFC 7240) separated by commas (or semicolons, which
# separate a preference's parameters): one of them must be `respond-async`.
PREFER_PATTERN = r"^(?:.*[,;])?[ \t]*respond-async[ \t]*(?:[,;].*)?$"
_TICK = timedelta(microseconds=1)  # the database keeps microseconds

_json = {"content": {"application/json": {"schema": {"type": "object"}}}}
_outcome = {
    "description": "OperationOutcome",
    "content": {FHIR_MEDIA_TYPE: {"schema": {"type": "object"}}},
}

router = APIRouter(
    prefix=PREFIX,
    tags=["fhir bulk data"],
    dependencies=[Depends(authorize)],
    default_response_class=FhirResponse,
    responses={400: _outcome, 401: _outcome, 403: _outcome, 404: _outcome, 500: _outcome},
)


class ExportNotFound(NotFound):
    pass


# --- kick-off -------------------------------------------------------------------------------


def _prefer_tokens(request: Request) -> set[str]:
    prefer = request.headers.get("prefer", "")
    return {part.strip(" \t") for part in prefer.replace(";", ",").split(",")} - {""}


def parse_types(values: Sequence[str]) -> tuple[str, ...]:
    """`_type` (comma-separated, repeatable) in manifest order; every type when absent."""
    if not values:
        return EXPORT_TYPES
    for value in values:
        if re.fullmatch(TYPE_PATTERN[1:-1], value) is None:
            raise InvalidSearch.at_param(
                "_type",
                f"must be a comma-separated list of {', '.join(EXPORT_TYPES)}",
            )
    asked = {name for value in values for name in value.split(",")}
    return tuple(name for name in EXPORT_TYPES if name in asked)


def _single(name: str, values: list[str]) -> str | None:
    if not values:
        return None
    if len(values) > 1:
        raise InvalidSearch.at_param(name, "may be given once")
    return values[0]


def parse_kick_off(request: Request) -> tuple[tuple[str, ...], datetime | None]:
    """The export's types and `_since`, or a 400 naming what cannot be honoured."""
    tokens = _prefer_tokens(request)
    if "respond-async" not in tokens:
        raise InvalidSearch(
            "Bulk export runs asynchronously: send `Prefer: respond-async`.",
            [{"loc": ["header", "prefer"], "msg": "must include respond-async"}],
        )
    query = request.query_params
    if "handling=lenient" not in tokens:
        for name in sorted(set(query.keys()) - KICK_OFF_PARAMS):
            raise InvalidSearch.at_param(name, "is not supported by $export")
    output_format = _single("_outputFormat", query.getlist("_outputFormat"))
    if output_format is not None and output_format.replace(" ", "+") not in OUTPUT_FORMATS:
        raise InvalidSearch.at_param("_outputFormat", f"only {NDJSON_MEDIA_TYPE} is supported")
    raw_since = _single("_since", query.getlist("_since"))
    since = None
    if raw_since is not None:
        # An unencoded "+" in a query string arrives as a space.
        raw_since = raw_since.replace(" ", "+")
        if not admits("_since", raw_since):
            raise InvalidSearch.at_param("_since", PARAMS["_since"].message)
        since = parse_instant(raw_since)
    return parse_types(query.getlist("_type")), since


def _settings(request: Request) -> Settings:
    return app_state(request).settings


async def _kick_off(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    kind: Literal["system", "patient"],
) -> Response:
    types, since = parse_kick_off(request)
    now = utcnow()
    retention = timedelta(hours=_settings(request).export_retention_hours)
    await session.execute(delete(ExportJob).where(ExportJob.created_at < now - retention))
    job = ExportJob(
        id=uuid.uuid4(),
        token_id=principal.token_id,
        kind=kind,
        types=",".join(types),
        since=since,
        transaction_time=now,
        request_url=str(request.url),
        created_at=now,
    )
    session.add(job)
    _audit_resource(request, job.id)
    status_url = f"{_base_url(request)}/$export-status/{job.id}"
    return Response(status_code=202, headers={"Content-Location": status_url})


_KICK_OFF_DOC = {
    "parameters": [
        {"name": "Prefer", "in": "header", "required": True,
         "schema": {"type": "string", "pattern": PREFER_PATTERN},
         "description": "Preferences, one of which is `respond-async` (required)."},
        {"name": "_type", "in": "query", "required": False,
         "schema": {"type": "string", "pattern": TYPE_PATTERN},
         "description": f"Comma-separated subset of {', '.join(EXPORT_TYPES)} (default: all)."},
        {"name": "_since", "in": "query", "required": False, "schema": declared("_since"),
         "description": PARAMS["_since"].description},
        {"name": "_outputFormat", "in": "query", "required": False,
         "schema": {"type": "string", "enum": sorted(OUTPUT_FORMATS)},
         "description": f"`{NDJSON_MEDIA_TYPE}` (the only one)."},
    ]
}  # fmt: skip
_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Accepted: poll the URL in `Content-Location`.",
        "headers": {"Content-Location": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/$export",
    summary="Bulk Data export: kick-off (all patients)",
    status_code=202,
    response_class=Response,
    responses=_ACCEPTED,
    openapi_extra=_KICK_OFF_DOC,
)
async def system_export(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    """Starts an export of every patient's data; poll the status URL for the manifest."""
    return await _kick_off(request, session, principal, "system")


@router.get(
    "/Patient/$export",
    summary="Bulk Data export: kick-off (Patient compartment)",
    status_code=202,
    response_class=Response,
    responses=_ACCEPTED,
    openapi_extra=_KICK_OFF_DOC,
)
async def patient_export(
    request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    """Starts an export of every patient's compartment (this server has no Groups, so all
    patients): the same resource types as `$export`."""
    return await _kick_off(request, session, principal, "patient")


# --- status ---------------------------------------------------------------------------------


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def _audit_resource(request: Request, job_id: uuid.UUID) -> None:
    record: AccessRecord | None = getattr(request.state, "access", None)
    if record is not None:
        record.resource_id = str(job_id)


async def _job(
    request: Request, session: AsyncSession, principal: Principal, raw_id: str
) -> ExportJob:
    """The job, if this token may see it (its own, or any for an admin); else a 404."""
    try:
        job_id = uuid.UUID(raw_id)
    except ValueError:
        job_id = None
    job = await session.get(ExportJob, job_id) if job_id else None
    retention = timedelta(hours=_settings(request).export_retention_hours)
    if (
        job is None
        or job.created_at < utcnow() - retention
        or (job.token_id != principal.token_id and principal.role != "admin")
    ):
        raise ExportNotFound(f"No export job {raw_id}.")
    _audit_resource(request, job.id)
    return job


def manifest(job: ExportJob, base_url: str) -> dict[str, Any]:
    """The completion manifest: one file per type asked for (there may be none in it)."""
    return {
        "transactionTime": mapping.instant(job.transaction_time),
        "request": job.request_url,
        "requiresAccessToken": True,
        "output": [
            {"type": name, "url": f"{base_url}/$export-file/{job.id}/{name}.ndjson"}
            for name in job.types.split(",")
        ],
        "error": [],
    }


@router.get(
    "/$export-status/{job_id}",
    summary="Bulk Data export: status (the manifest)",
    response_class=JSONResponse,
    responses={200: _json},
)
async def export_status(
    job_id: uuid.UUID, request: Request, session: SessionDep, principal: PrincipalDep
) -> JSONResponse:
    """Complete as soon as it is started: the manifest lists one `application/fhir+ndjson`
    file per resource type, produced when downloaded (with the same bearer token)."""
    job = await _job(request, session, principal, str(job_id))
    expires = job.created_at + timedelta(hours=_settings(request).export_retention_hours)
    headers = {"Expires": expires.strftime("%a, %d %b %Y %H:%M:%S GMT")}
    return JSONResponse(manifest(job, _base_url(request)), headers=headers)


@router.delete(
    "/$export-status/{job_id}",
    summary="Bulk Data export: cancel",
    status_code=202,
    response_class=Response,
)
async def cancel_export(
    job_id: uuid.UUID, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    """Forgets the job: its status and files are 404 from then on."""
    job = await _job(request, session, principal, str(job_id))
    await session.delete(job)
    return Response(status_code=202)


# --- files ----------------------------------------------------------------------------------


def file_query(resource_type: str, job: ExportJob) -> SearchQuery:
    """The rows of one file: changed at or after `_since`; immutable ones up to the
    transaction time (inclusive)."""
    bounds: list[TimeBound] = []
    if job.since is not None:
        bounds.append(TimeBound(">=", job.since))
    if resource_type in IMMUTABLE:
        bounds.append(TimeBound("<", job.transaction_time + _TICK))
    return SearchQuery(last_updated=tuple(bounds))


async def ndjson_lines(
    sessionmaker: async_sessionmaker[AsyncSession],
    resource_type: str,
    query: SearchQuery,
    batch_size: int,
    *,
    identifier_system: str,
) -> AsyncIterator[bytes]:
    """The file, one chunk per batch: each batch is one keyset query in its own short
    session, mapped and serialised, then dropped before the next is read."""
    section = SECTIONS[resource_type]
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        # Closing the session ends its transaction (and any SQLite lock) before the chunk is
        # sent: a slow client holds no connection.
        async with sessionmaker() as session:
            rows = await FhirRepository(session).page(section, query, after, batch_size)
            if not rows:
                return
            resources = (mapping.to_fhir(row, identifier_system=identifier_system) for row in rows)
            chunk = "".join(
                json.dumps(resource, separators=(",", ":"), ensure_ascii=False) + "\n"
                for resource in resources
            ).encode()
            count, last = len(rows), rows[-1]
            after = (mapping.last_updated(last), last.id)
            del rows, last
        yield chunk
        if count < batch_size:
            return


@router.get(
    "/$export-file/{job_id}/{resource_type}.ndjson",
    summary="Bulk Data export: one file",
    response_class=StreamingResponse,
    responses={200: {"content": {NDJSON_MEDIA_TYPE: {"schema": {"type": "string"}}}}},
)
async def export_file(
    job_id: uuid.UUID,
    resource_type: ExportType,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
) -> StreamingResponse:
    """One resource type of the export as newline-delimited FHIR JSON, streamed."""
    job = await _job(request, session, principal, str(job_id))
    if resource_type not in job.types.split(","):
        raise ExportNotFound(f"Export {job_id} has no {resource_type} file.")
    lines = ndjson_lines(
        app_state(request).sessionmaker,
        resource_type,
        file_query(resource_type, job),
        _settings(request).export_batch_size,
        identifier_system=_settings(request).fhir_identifier_system,
    )
    return StreamingResponse(lines, media_type=NDJSON_MEDIA_TYPE)
