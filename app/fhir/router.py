"""The FHIR R4 read API under `/fhir/R4` (HTTP only: parameters in, `application/fhir+json` out).

Access is the one `authorize` dependency with the rules in app/auth/rules.py: integration and
admin tokens read every patient; a patient token reads its own compartment only (searches must
name that patient; anything else is a 404, as in the business API). A Patient search names no
patient: a patient token's finds its own Patient or nothing (its compartment, the service's
`compartment`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Request

from app.auth.access import PrincipalDep, authorize
from app.core.db import SessionDep, utcnow
from app.core.errors import register_error_format
from app.core.state import app_state
from app.fhir import mapping
from app.fhir.export import router as export_router
from app.fhir.responses import FHIR_MEDIA_TYPE, FhirResponse, outcome_response
from app.fhir.search import FHIR_ID, PARAMS, SECTION_NAMES, SearchQuery, declared, parse_search
from app.fhir.service import EVERYTHING as EVERYTHING_SECTIONS
from app.fhir.service import FhirService, Links
from app.oauth.router import token_url

PREFIX = "/fhir/R4"
# The date the CapabilityStatement last changed: bump it with the statement.
CAPABILITY_DATE = date(2026, 12, 11)

_outcome = {
    "description": "OperationOutcome",
    "content": {FHIR_MEDIA_TYPE: {"schema": {"type": "object"}}},
}
_resource = {"content": {FHIR_MEDIA_TYPE: {"schema": {"type": "object"}}}}

router = APIRouter(
    prefix=PREFIX,
    tags=["fhir"],
    dependencies=[Depends(authorize)],
    default_response_class=FhirResponse,
    # A request the declarations refuse is a 400 here, not the business API's 422 (responses.py).
    responses={
        400: _outcome,
        401: _outcome,
        403: _outcome,
        404: _outcome,
        406: _outcome,
        500: _outcome,
    },
)

_PAGING = ("_count", "_cursor", "_format")
# A Patient's id as FHIR writes one (this server's are UUIDs; any other is a 404).
PatientId = Annotated[str, Path(pattern=f"^{FHIR_ID}$", description="A FHIR id.")]


def _lenient(request: Request) -> bool:
    prefer = request.headers.get("prefer", "")
    return any(part.strip() == "handling=lenient" for part in prefer.replace(";", ",").split(","))


def _params(
    *names: str, sections: Sequence[str] = SECTION_NAMES
) -> Callable[[Request], SearchQuery]:
    """A dependency that parses and validates the query string against ``names`` (of a route
    paging through ``sections``)."""

    def dependency(request: Request) -> SearchQuery:
        return parse_search(
            request.query_params.multi_items(),
            supported=names,
            strict=not _lenient(request),
            sections=sections,
            identifier_system=_identifier_system(request),
        )

    return dependency


def _openapi(names: Sequence[str], sections: Sequence[str] = SECTION_NAMES) -> dict[str, Any]:
    """The parameters as app/fhir/search.py's PARAMS declares them (and parse_search checks)."""
    parameters = []
    for name in names:
        parameters.append(
            {"name": name, "in": "query", "required": False,
             "description": PARAMS[name].description, "schema": declared(name, sections)}
        )  # fmt: skip
    return {"parameters": parameters}


def _identifier_system(request: Request) -> str:
    return app_state(request).settings.fhir_identifier_system


def _service(request: Request, session: SessionDep) -> FhirService:
    return FhirService(session, identifier_system=_identifier_system(request))


Service = Annotated[FhirService, Depends(_service)]


def _links(request: Request, path: str) -> Links:
    base = str(request.base_url).rstrip("/") + PREFIX
    return Links(base_url=base, search_url=f"{base}{path}")


ReadParams = Annotated[SearchQuery, Depends(_params("_format"))]
# What every type search takes besides its filters: its order, a summary, whether to count.
_RESULTS = ("_sort", "_summary", "_total", "_totalMethod")
PATIENT_SEARCH = ("identifier", "_lastUpdated", *_RESULTS, *_PAGING)
SEARCH = ("patient", "_lastUpdated", "_include", *_RESULTS, *_PAGING)
OBSERVATION_SEARCH = ("patient", "code", "date", "_lastUpdated", "_include", *_RESULTS, *_PAGING)
EVERYTHING = ("_since", *_PAGING)


@router.get(
    "/metadata",
    summary="CapabilityStatement",
    responses={200: _resource},
    # Open (no token), as FHIR servers serve it: SMART clients read the token endpoint here.
    openapi_extra={**_openapi(["_format"]), "security": []},
)
async def capability_statement(request: Request, _query: ReadParams) -> FhirResponse:
    """What this server supports, exactly: reading Patient, `$everything`, and searching
    Patient, Observation, Procedure and CarePlan with the parameters listed; its `rest.security`
    names SMART on FHIR and the token endpoint; and topic-based Subscriptions. Open: no
    token needed."""
    security = mapping.rest_security(
        token_url=token_url(request), cors=bool(app_state(request).settings.cors_origins)
    )
    statement = mapping.capability_statement(
        base_url=str(request.base_url).rstrip("/") + PREFIX,
        software_version=request.app.version,
        published=CAPABILITY_DATE,
        security=security,
    )
    return FhirResponse(statement)


@router.get(
    "/Patient/{patient_id}",
    summary="Read a Patient",
    responses={200: _resource},
    openapi_extra=_openapi(["_format"]),
)
async def read_patient(patient_id: PatientId, service: Service, _query: ReadParams) -> FhirResponse:
    return FhirResponse(await service.patient(patient_id))


@router.get(
    "/Patient/{patient_id}/$everything",
    summary="Patient $everything",
    responses={200: _resource},
    openapi_extra=_openapi(EVERYTHING, EVERYTHING_SECTIONS),
)
async def patient_everything(
    patient_id: PatientId,
    request: Request,
    service: Service,
    query: Annotated[SearchQuery, Depends(_params(*EVERYTHING, sections=EVERYTHING_SECTIONS))],
) -> FhirResponse:
    """A searchset Bundle of the Patient, its CarePlans (courses), Procedures (sessions) and
    Observations, paged like a search; with `_since`, only what changed from then on (the
    Patient too)."""
    links = _links(request, f"/Patient/{patient_id}/$everything")
    return FhirResponse(await service.everything(patient_id, query, links, utcnow()))


def _search_route(resource_type: str, names: Sequence[str], doc: str) -> None:
    # A default rather than Annotated: string annotations cannot name this closure's locals.
    async def search(
        request: Request,
        service: Service,
        principal: PrincipalDep,  # the request's one `authorize` (FastAPI reuses its answer)
        query: SearchQuery = Depends(_params(*names, sections=[resource_type])),
    ) -> FhirResponse:
        links = _links(request, f"/{resource_type}")
        # A token bound to a patient searches that patient's compartment, and nothing else.
        bundle = await service.search(
            resource_type, query, links, utcnow(), compartment=principal.patient_id
        )
        return FhirResponse(bundle)

    search.__doc__ = doc
    router.add_api_route(
        f"/{resource_type}",
        search,
        methods=["GET"],
        summary=f"Search {resource_type}",
        name=f"search_{resource_type.lower()}",
        responses={200: _resource},
        openapi_extra=_openapi(names, [resource_type]),
    )


_search_route(
    "Patient",
    PATIENT_SEARCH,
    "Patients, by the MRN (`identifier`) or when they changed; a patient token finds only its own.",
)
_search_route(
    "Observation",
    OBSERVATION_SEARCH,
    "Pain scores and mobility measures: LOINC where one exists, always this service's "
    "instrument code; UCUM units; `survey` or `exam`.",
)
_search_route(
    "Procedure", SEARCH, "Treatment sessions: completed ozone infiltrations, basedOn the course."
)
_search_route(
    "CarePlan",
    SEARCH,
    "Courses: the activity's `scheduledTiming.repeat` holds the current weekly frequency.",
)


def install_fhir(app: FastAPI) -> None:
    """Serve the FHIR API and answer every error under `/fhir/` with an OperationOutcome."""
    # Bulk Data first: `/Patient/$export` must not be read as `/Patient/{patient_id}`.
    app.include_router(export_router)
    app.include_router(router)
    register_error_format(app, "/fhir/", outcome_response)
