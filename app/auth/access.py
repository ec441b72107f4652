"""The access dependency: applies the rules (app/auth/rules.py) to every request."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import bindparam, select

from app.audit.service import audit_request
from app.auth.errors import Forbidden, Unauthenticated
from app.auth.principal import Principal
from app.auth.rules import RULES, AccessRecord, Rule
from app.auth.service import TokenService
from app.auth.state import auth_state
from app.core.db import SessionDep
from app.core.errors import NotFound
from app.core.params import check_parameters
from app.core.state import app_state
from app.core.telemetry import route_template
from app.courses.models import Course

_COURSE_PATIENT = select(Course.patient_id).where(Course.id == bindparam("course_id"))
# The path parameters an audit row names as its resource_id, the first one present.
_NAMED = ("token_id", "client_id", "course_id", "patient_id")


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Send `Authorization: Bearer <token>`.")
    return token.strip()


async def authorize(request: Request, session: SessionDep) -> Principal:
    """The one access decision: 401 without a valid token, 403 for a role that may not do this,
    404 for a patient token naming another patient (existence is not revealed).

    First of all, before any database work: a 422 for a malformed path or query parameter
    (app/core/params.py). Every answer, that one included, leaves an audit row."""
    method, template = request.method, route_template(request.scope)
    rule = RULES.get(("GET" if method == "HEAD" else method, template))
    record = AccessRecord(
        rule=rule or Rule(frozenset(), "read", "unknown"), request_id=request.state.request_id
    )
    request.state.access = record
    audit_request(request, record)
    check_parameters(request)  # so only well-formed ids are recorded or looked up below
    params = request.path_params
    record.resource_id = next((str(params[k]) for k in _NAMED if k in params), None)
    if rule is not None and rule.scope == "patient":
        record.patient_id = _uuid_or_none(params.get("patient_id"))  # no query: known at once
    elif rule is not None and rule.scope == "patient-query":
        record.patient_id = _patient_query(request)
    tokens = TokenService(session, auth_state(request).token_cache, app_state(request).raw_pool)
    principal = await tokens.resolve(bearer_token(request))
    record.principal = principal
    if rule is None:
        raise Forbidden("No access rule covers this route.")
    if rule.scope == "course":
        # Looked up for authenticated callers only: anonymous ones drive no queries.
        course_id = _uuid_or_none(params.get("course_id"))
        if course_id is not None:
            record.patient_id = await session.scalar(_COURSE_PATIENT, {"course_id": course_id})
    if principal.role not in rule.roles:
        raise Forbidden(f"The {principal.role} role may not do this.")
    if (
        principal.role == "patient"
        and rule.scope != "none"
        and record.patient_id != principal.patient_id
    ):
        # The same answer as for an id that does not exist.
        raise NotFound("No such resource.")
    record.outcome = "allowed"
    return principal


def _uuid_or_none(raw: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None  # a malformed id: validation answers 422 (or the patient check 404)


def _patient_query(request: Request) -> uuid.UUID | None:
    """The patient a FHIR search names (`patient=Patient/<id>` or `patient=<id>`); None when it
    names none, several, or an id that cannot exist (a patient token then gets a 404)."""
    values = request.query_params.getlist("patient")
    if len(values) != 1:
        return None
    return _uuid_or_none(values[0].removeprefix("Patient/"))


PrincipalDep = Annotated[Principal, Depends(authorize)]
