"""The access dependency: applies the rules (app/auth/rules.py) to every request."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import bindparam, select

from app.audit.service import audit_request
from app.auth import scopes
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
_NAMED = (
    "token_id",
    "client_id",
    "device_id",
    "course_id",
    "patient_id",
    "delivery_id",
    "webhook_id",
    "subscription_id",
)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Send `Authorization: Bearer <token>`.")
    return token.strip()


async def authorize(request: Request, session: SessionDep) -> Principal | None:
    """The one access decision: 401 without a valid token, 403 for a role that may not do this
    or a token whose SMART scopes do not cover it, 404 for a patient token naming another
    patient (existence is not revealed).

    First of all, before any database work: a 422 for a malformed path or query parameter
    (app/core/params.py). Every answer, that one included, leaves an audit row (unless the
    rule says the route holds no patient data). An open rule (discovery) asks for no token:
    one sent is not even looked up, and the answer is None."""
    method, template = request.method, route_template(request.scope)
    rule = RULES.get(("GET" if method == "HEAD" else method, template))
    record = AccessRecord(
        rule=rule or Rule(frozenset(), "read", "unknown"), request_id=request.state.request_id
    )
    request.state.access = record
    audit_request(request, record)
    check_parameters(request)  # so only well-formed ids are recorded or looked up below
    if rule is not None and rule.open:
        record.outcome = "allowed"
        return None
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
    if principal.scope is not None:
        _check_scopes(request, rule, principal, principal.scope)
    if (
        principal.role == "patient"
        and rule.scope != "none"
        and record.patient_id != principal.patient_id
    ):
        # The same answer as for an id that does not exist.
        raise NotFound("No such resource.")
    record.outcome = "allowed"
    return principal


def _check_scopes(request: Request, rule: Rule, principal: Principal, scope: str) -> None:
    """A token issued at /oauth/token may do what its role allows *and* its scopes grant.
    Refused (403) before a patient token's patient is compared, so the answer says nothing
    about another patient's records."""
    route_needs = rule.needs
    if route_needs is None or route_needs.administration:
        raise Forbidden("No SMART scope grants this: it needs a token made by an admin.")
    named: list[str] = []
    if route_needs.types_named_by == "_type":
        named = request.query_params.getlist("_type")
    elif route_needs.types_named_by == "resource_type":
        named = [str(request.path_params.get("resource_type", ""))]
    lacking = scopes.missing(
        scope,
        patient_bound=principal.patient_id is not None,
        wanted=route_needs.wanted(named),
    )
    if lacking is not None:
        raise Forbidden(f"The token's scope does not grant {lacking}.")


async def authenticated(principal: Annotated[Principal | None, Depends(authorize)]) -> Principal:
    """The caller of a route that needs a token (every route but the open ones)."""
    if principal is None:  # an open route's handler asked who is calling: nobody is
        raise Unauthenticated("Send `Authorization: Bearer <token>`.")
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


PrincipalDep = Annotated[Principal, Depends(authenticated)]
