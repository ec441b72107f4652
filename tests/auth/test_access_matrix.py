"""What holds on every route, generated from the app's own routes and the rules' table.

A new route cannot escape: it must have a rule (else the coverage test fails and the access
dependency refuses it with 403) that says what a scoped token needs for it, it answers 401
without a token (unless its rule is open: discovery), and a patient token cannot reach another
patient through it, with or without SMART scopes. Which role may use which route, and what the
audit trail records, is checked against the documents in test_contract.py: expectations
generated from app/auth/rules.py would only check the rules against themselves.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.rules import RULES, Rule
from app.auth.scopes import NO_DATA, missing
from app.courses.models import Course
from app.observations.models import Observation
from app.patients.models import Patient
from app.treatment_sessions.models import TreatmentSession
from tests.factories import API, create_course, create_patient, create_session
from tests.oauth.support import client_body, ec_signer
from tests.support import Issue, MakeClient, issue_scoped

ROLES = ("admin", "clinician", "patient", "integration", "dashboard")
METHODS = {"GET", "POST", "PATCH", "PUT", "DELETE"}
SECRET_NAME = "Bobby Tables-Hidden"


# Where the access dependency runs: the business API, FHIR, and SMART discovery at the root.
GUARDED = ("/api/", "/fhir/", "/.well-known/")
# A patient app's scope (the enrolment grant issues exactly this): what a patient token does.
PATIENT_APP_SCOPE = "patient/*.rs patient/Observation.c"


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every guarded route, from the app's OpenAPI route table."""
    routes = []
    for path, operations in app.openapi()["paths"].items():
        if path.startswith(GUARDED):
            routes += [(method.upper(), path) for method in operations if method.upper() in METHODS]
    return sorted(routes)


def test_every_business_route_has_an_access_rule(app: FastAPI) -> None:
    routes = api_routes(app)
    assert routes, "no routes found"
    missing = [route for route in routes if route not in RULES]
    assert not missing, f"routes without an access rule: {missing}"
    stale = [rule for rule in RULES if rule not in routes]
    assert not stale, f"rules for routes that do not exist: {stale}"


def test_every_rule_says_what_a_scoped_token_needs() -> None:
    """Total: a rule without `needs` refuses every scoped token (and fails here)."""
    unmapped = [route for route, rule in RULES.items() if rule.needs is None]
    assert not unmapped, f"rules without needs (app/auth/scopes.py): {unmapped}"
    for route, rule in RULES.items():
        assert rule.needs is not None
        if rule.open or not rule.audit:  # no patient data: no scope is needed
            assert rule.needs == NO_DATA, route
        if rule.roles <= {"admin"}:  # administration: no scope grants it
            assert rule.needs.administration, route


def test_open_rules_are_discovery_only() -> None:
    opened = sorted(route for route, rule in RULES.items() if rule.open)
    assert opened == [
        ("GET", "/.well-known/smart-configuration"),
        ("GET", "/fhir/R4/.well-known/smart-configuration"),
        ("GET", "/fhir/R4/metadata"),
    ]
    assert all(not RULES[route].audit for route in opened)


def _ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def body_for(method: str, template: str) -> dict[str, Any] | None:
    """A valid body for each writing route, so an allowed call would really write."""
    if method not in {"POST", "PATCH"}:
        return None
    bodies: dict[str, dict[str, Any]] = {
        "/api/v1/patients": {"name": "New Patient"},
        "/api/v1/patients/{patient_id}": {"condition": "changed"},
        "/api/v1/patients/{patient_id}/courses": {
            "indication": "spondylosis", "region": "lumbar", "technique": "paravertebral",
            "start_date": (datetime.now(UTC) - timedelta(days=3)).date().isoformat(),
        },
        "/api/v1/courses/{course_id}": {"notes": "changed"},
        "/api/v1/courses/{course_id}/frequency": {"sessions_per_week": 2, "reason": "matrix"},
        "/api/v1/courses/{course_id}/sessions": {"performed_at": _ago(hours=2)},
        "/api/v1/patients/{patient_id}/observations": {
            "instrument": "pain-nrs", "value": 4, "recorded_at": _ago(hours=1)
        },
        "/api/v1/patients/{patient_id}/observations/batch": {
            "observations": [{"instrument": "pain-nrs", "value": 4, "recorded_at": _ago(hours=1)}]
        },
        "/api/v1/tokens": {"role": "dashboard"},
        "/fhir/R4/Subscription": {"resourceType": "Subscription"},
        "/api/v1/webhooks": {
            "url": "https://receiver.example/hook", "events": ["observation.created"]
        },
        "/api/v1/patients/{patient_id}/enrolments": {},
        "/api/v1/clients": client_body(ec_signer()),
    }  # fmt: skip
    return bodies.get(template)


@dataclass
class World:
    own_patient: str
    own_course: str
    other_patient: str
    other_course: str
    tokens: dict[str, str]


@pytest.fixture
async def world(client: httpx.AsyncClient, issue_token: Issue) -> World:
    own = await create_patient(client, name="Alice Own")
    own_course = await create_course(client, own["id"])
    await create_session(client, own_course["id"])
    other = await create_patient(client, name=SECRET_NAME, external_id="MRN-HIDDEN-9")
    other_course = await create_course(client, other["id"], indication="hidden indication")
    await create_session(client, other_course["id"])
    tokens = {role: await issue_token(role) for role in ROLES if role != "patient"}
    tokens["patient"] = await issue_token("patient", own["id"])
    return World(own["id"], own_course["id"], other["id"], other_course["id"], tokens)


def fill(template: str, patient_id: str, course_id: str) -> str:
    return template.format(
        patient_id=patient_id, course_id=course_id, token_id=uuid.uuid4(), job_id=uuid.uuid4(),
        resource_type="Observation", webhook_id=uuid.uuid4(), delivery_id=uuid.uuid4(),
        subscription_id=uuid.uuid4(), device_id=uuid.uuid4(), client_id=uuid.uuid4(),
    )  # fmt: skip


async def call(c: httpx.AsyncClient, method: str, template: str, path: str) -> httpx.Response:
    return await c.request(method, path, json=body_for(method, template))


async def test_no_token_is_401_on_every_route(
    app: FastAPI, world: World, anonymous: httpx.AsyncClient
) -> None:
    for method, template in api_routes(app):
        response = await call(
            anonymous, method, template, fill(template, world.own_patient, world.own_course)
        )
        if RULES[(method, template)].open:
            assert response.status_code == 200, (method, template, response.text)
            continue
        assert response.status_code == 401, (method, template, response.text)
        fhir = template.startswith("/fhir/")  # FHIR answers errors with an OperationOutcome
        media_type = "application/fhir+json" if fhir else "application/problem+json"
        assert response.headers["content-type"].startswith(media_type)
        assert response.headers["www-authenticate"].startswith("Bearer")


async def _counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            model.__tablename__: int(
                await conn.scalar(select(func.count()).select_from(model)) or 0
            )
            for model in (Patient, Course, TreatmentSession, Observation)
        }


@pytest.mark.parametrize("scope", [None, PATIENT_APP_SCOPE, "patient/*.*"])
async def test_patient_token_cannot_reach_another_patient(
    app: FastAPI,
    world: World,
    engine: AsyncEngine,
    make_client: MakeClient,
    scope: str | None,
) -> None:
    """On every route naming a patient or course: 404 (existence not revealed) when the role may
    use the route (and, for a scoped token, its scopes cover it), 403 when not; nothing
    written; none of the other patient's data. The same for an enrolled app's token, whose
    scopes never widen what its role and patient allow."""
    token = world.tokens["patient"]
    if scope is not None:
        token = await issue_scoped(engine, "patient", scope, world.own_patient)
    patient = make_client(token)
    before = await _counts(engine)
    for method, template in api_routes(app):
        if "{patient_id}" not in template and "{course_id}" not in template:
            continue
        rule = RULES[(method, template)]
        response = await call(
            patient, method, template, fill(template, world.other_patient, world.other_course)
        )
        covered = scope is None or _covers(scope, rule, patient_bound=True)
        expected = 404 if "patient" in rule.roles and covered else 403
        assert response.status_code == expected, (method, template, response.text)
        for secret in (SECRET_NAME, "MRN-HIDDEN-9", "hidden indication"):
            assert secret not in response.text
    assert await _counts(engine) == before


def _covers(scope: str, rule: Rule, *, patient_bound: bool) -> bool:
    needs = rule.needs
    assert needs is not None
    if needs.administration:
        return False
    return missing(scope, patient_bound=patient_bound, wanted=needs.wanted([])) is None


@pytest.mark.parametrize("scope", [None, PATIENT_APP_SCOPE])
async def test_patient_token_reads_and_records_its_own_data(
    world: World, make_client: MakeClient, engine: AsyncEngine, scope: str | None
) -> None:
    token = world.tokens["patient"]
    if scope is not None:
        token = await issue_scoped(engine, "patient", scope, world.own_patient)
    patient = make_client(token)
    assert (await patient.get(f"{API}/patients/{world.own_patient}")).status_code == 200
    assert (await patient.get(f"{API}/courses/{world.own_course}/sessions")).status_code == 200
    body = body_for("POST", "/api/v1/patients/{patient_id}/observations")
    response = await patient.post(f"{API}/patients/{world.own_patient}/observations", json=body)
    assert response.status_code == 201
    # a patient may not list other patients, nor change its own record
    assert (await patient.get(f"{API}/patients")).status_code == 403
    response = await patient.patch(f"{API}/patients/{world.own_patient}", json={"name": "x"})
    assert response.status_code == 403


async def test_patient_token_for_an_unknown_id_is_the_same_404(
    world: World, make_client: MakeClient
) -> None:
    patient = make_client(world.tokens["patient"])
    unknown = await patient.get(f"{API}/patients/{uuid.uuid4()}")
    other = await patient.get(f"{API}/patients/{world.other_patient}")
    assert unknown.status_code == other.status_code == 404
    assert unknown.json()["detail"] == other.json()["detail"]
