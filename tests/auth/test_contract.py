"""The access contract as the documents state it, written out by hand and tried over HTTP.

Who may use which route is written here a second time, from the documents and never from the
code: docs/security.md ("Route by route", and the two routes listed under the table:
`GET /tokens` and the patient summary) and docs/fhir.md ("Who may read", "Bulk Data export").
The rules themselves (app/auth/rules.py) are not imported, so a change to them that the
documents do not make fails here. (tests/auth/test_access_matrix.py derives its expectations
from the rules, and so checks them against themselves.)

Every role tries every route with a real token: a "no" must be a 403 and a "yes" a success
(2xx); "own" is a success on the patient the token is bound to (and that patient's courses)
and a 404 on any other; "open" is a success with any token or none (discovery). Each
request's audit row, found by its X-Request-ID, must name the action, resource type and
patient written in AUDIT_TABLE.

Tokens issued at /oauth/token also carry SMART scopes (docs/security.md, "Scopes"): SCOPE_TABLE
writes down, from the documents, what each route needs of them. A scoped token holding exactly
that succeeds, one lacking any part of it gets a 403 (audited as denied), and no scope opens
the administration routes; a patient app's token (`patient/*.rs patient/Observation.c`) does
what a patient token does.

Every route of the app (under /api, /fhir and /.well-known) must have a row in every table, and
every row must be a real route (test_every_route_has_a_row_and_every_row_is_a_route). An issue
that adds routes (enrolments, devices, webhooks, FHIR Subscriptions, the dashboard, /me, ...)
adds their rows here, from what its documentation says, in the same change.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, get_args

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit.models import AuditEvent
from app.auth.service import TokenService
from app.core.db import create_sessionmaker
from app.core.state import app_state
from app.outbox.models import OutboxEvent
from app.push.models import PushDelivery
from tests.factories import create_course, create_observation, create_patient, create_session
from tests.oauth.support import client_body, ec_signer, register
from tests.support import client_of, empty_tables, issue_scoped

ROLES = ("admin", "clinician", "patient", "integration", "dashboard")

# One mark per role, in the order of ROLES: `x` may, `.` may not (403), `own` only on the
# patient the token is bound to (404 on any other). Paths are the app's route templates.
CONTRACT_TABLE = """
                                                              admin  clin.  pat.  integ.  dash.
GET    /api/v1/instruments                                      x      x      x      x      x
POST   /api/v1/patients                                         x      x      .      .      .
GET    /api/v1/patients                                         x      x      .      x      .
GET    /api/v1/patients/{patient_id}                            x      x     own     x      .
PATCH  /api/v1/patients/{patient_id}                            x      x      .      .      .
POST   /api/v1/patients/{patient_id}/courses                    x      x      .      .      .
GET    /api/v1/patients/{patient_id}/courses                    x      x     own     .      .
GET    /api/v1/courses/{course_id}                              x      x     own     .      .
PATCH  /api/v1/courses/{course_id}                              x      x      .      .      .
POST   /api/v1/courses/{course_id}/frequency                    x      x      .      .      .
GET    /api/v1/courses/{course_id}/frequency-history            x      x     own     .      .
POST   /api/v1/courses/{course_id}/sessions                     x      x      .      .      .
GET    /api/v1/courses/{course_id}/sessions                     x      x     own     .      .
POST   /api/v1/patients/{patient_id}/observations               x      x     own     .      .
POST   /api/v1/patients/{patient_id}/observations/batch         x      x     own     .      .
GET    /api/v1/patients/{patient_id}/observations               x      x     own     .      .
GET    /api/v1/patients/{patient_id}/trends                     x      x     own     .      x
GET    /api/v1/courses/{course_id}/recommendation               x      x     own     .      .
GET    /api/v1/cohort/summary                                   x      x      .      .      x
POST   /api/v1/tokens                                           x      .      .      .      .
DELETE /api/v1/tokens/{token_id}                                x      .      .      .      .
GET    /api/v1/audit                                            x      .      .      .      .
GET    /api/v1/tokens                                           x      .      .      .      .
POST   /api/v1/webhooks                                         x      .      .      .      .
GET    /api/v1/webhooks                                         x      .      .      .      .
GET    /api/v1/webhooks/{webhook_id}/deliveries                 x      .      .      .      .
POST   /api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/resend  x  .  .      .      .
DELETE /api/v1/webhooks/{webhook_id}                            x      .      .      .      .
GET    /api/v1/patients/{patient_id}/summary                    x      x     own     x      .
POST   /api/v1/patients/{patient_id}/enrolments                 x      x      .      .      .
GET    /api/v1/patients/{patient_id}/devices                    x      x     own     .      .
DELETE /api/v1/patients/{patient_id}/devices/{device_id}        x      x      .      .      .
GET    /api/v1/me                                               x      x      x      x      x
GET    /fhir/R4/Patient                                         x      .      x      x      .
POST   /api/v1/clients                                          x      .      .      .      .
GET    /api/v1/clients                                          x      .      .      .      .
DELETE /api/v1/clients/{client_id}                              x      .      .      .      .
GET    /fhir/R4/metadata                                       open   open   open   open   open
GET    /fhir/R4/.well-known/smart-configuration                open   open   open   open   open
GET    /.well-known/smart-configuration                        open   open   open   open   open
GET    /fhir/R4/Patient/{patient_id}                            x      .     own     x      .
GET    /fhir/R4/Patient/{patient_id}/$everything                x      .     own     x      .
GET    /fhir/R4/Observation                                     x      .     own     x      .
GET    /fhir/R4/Procedure                                       x      .     own     x      .
GET    /fhir/R4/CarePlan                                        x      .     own     x      .
GET    /fhir/R4/$export                                         x      .      .      x      .
GET    /fhir/R4/Patient/$export                                 x      .      .      x      .
GET    /fhir/R4/$export-status/{job_id}                         x      .      .      x      .
DELETE /fhir/R4/$export-status/{job_id}                         x      .      .      x      .
GET    /fhir/R4/$export-file/{job_id}/{resource_type}.ndjson    x      .      .      x      .
GET    /fhir/R4/SubscriptionTopic                               x      .      .      x      .
POST   /fhir/R4/Subscription                                    x      .      .      x      .
GET    /fhir/R4/Subscription/{subscription_id}                  x      .      .      x      .
GET    /fhir/R4/Subscription/{subscription_id}/$status          x      .      .      x      .
DELETE /fhir/R4/Subscription/{subscription_id}                  x      .      .      x      .
"""

# What each request's audit row records (docs/security.md, "The audit trail"): its action, its
# resource_type, and the patient it names: `path` the path's patient, `course` the course's
# patient, `query` the FHIR search's `patient` (none without one), `new` the patient the
# request created, `self` the patient the token is bound to (none but for a patient token),
# `-` none. A route whose action is `-` leaves no row at all.
AUDIT_TABLE = """
                                                              action  resource_type         patient
GET    /api/v1/instruments                                    -       -                     -
POST   /api/v1/patients                                       create  patient               new
GET    /api/v1/patients                                       read    patient               -
GET    /api/v1/patients/{patient_id}                          read    patient               path
PATCH  /api/v1/patients/{patient_id}                          update  patient               path
POST   /api/v1/patients/{patient_id}/courses                  create  course                path
GET    /api/v1/patients/{patient_id}/courses                  read    course                path
GET    /api/v1/courses/{course_id}                            read    course                course
PATCH  /api/v1/courses/{course_id}                            update  course                course
POST   /api/v1/courses/{course_id}/frequency                  update  course                course
GET    /api/v1/courses/{course_id}/frequency-history          read    frequency-history     course
POST   /api/v1/courses/{course_id}/sessions                   create  session               course
GET    /api/v1/courses/{course_id}/sessions                   read    session               course
POST   /api/v1/patients/{patient_id}/observations             create  observation           path
POST   /api/v1/patients/{patient_id}/observations/batch       create  observation           path
GET    /api/v1/patients/{patient_id}/observations             read    observation           path
GET    /api/v1/patients/{patient_id}/trends                   read    trend                 path
GET    /api/v1/courses/{course_id}/recommendation             read    recommendation        course
GET    /api/v1/cohort/summary                                 read    cohort                -
POST   /api/v1/tokens                                         create  token                 -
DELETE /api/v1/tokens/{token_id}                              delete  token                 -
GET    /api/v1/audit                                          read    audit                 -
GET    /api/v1/tokens                                         read    token                 -
POST   /api/v1/webhooks                                       create  webhook               -
GET    /api/v1/webhooks                                       read    webhook               -
GET    /api/v1/webhooks/{webhook_id}/deliveries               read    webhook-delivery      -
POST   /api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/resend  update  webhook-delivery  -
DELETE /api/v1/webhooks/{webhook_id}                          delete  webhook               -
GET    /api/v1/patients/{patient_id}/summary                  read    summary               path
POST   /api/v1/patients/{patient_id}/enrolments               create  enrolment             path
GET    /api/v1/patients/{patient_id}/devices                  read    device                path
DELETE /api/v1/patients/{patient_id}/devices/{device_id}      delete  device                path
GET    /api/v1/me                                             read    token                 self
GET    /fhir/R4/Patient                                       read    patient               -
POST   /api/v1/clients                                        create  client                -
GET    /api/v1/clients                                        read    client                -
DELETE /api/v1/clients/{client_id}                            delete  client                -
GET    /fhir/R4/metadata                                      -       -                     -
GET    /fhir/R4/.well-known/smart-configuration               -       -                     -
GET    /.well-known/smart-configuration                       -       -                     -
GET    /fhir/R4/Patient/{patient_id}                          read    patient               path
GET    /fhir/R4/Patient/{patient_id}/$everything              export  patient-record        path
GET    /fhir/R4/Observation                                   read    observation           query
GET    /fhir/R4/Procedure                                     read    session               query
GET    /fhir/R4/CarePlan                                      read    course                query
GET    /fhir/R4/$export                                       export  bulk-export           -
GET    /fhir/R4/Patient/$export                               export  bulk-export           -
GET    /fhir/R4/$export-status/{job_id}                       read    bulk-export           -
DELETE /fhir/R4/$export-status/{job_id}                       delete  bulk-export           -
GET    /fhir/R4/$export-file/{job_id}/{resource_type}.ndjson  export  bulk-export           -
GET    /fhir/R4/SubscriptionTopic                             -       -                     -
POST   /fhir/R4/Subscription                                  create  subscription          -
GET    /fhir/R4/Subscription/{subscription_id}                read    subscription          -
GET    /fhir/R4/Subscription/{subscription_id}/$status        read    subscription          -
DELETE /fhir/R4/Subscription/{subscription_id}                delete  subscription          -
"""

# What a token with SMART scopes needs for each route (docs/security.md, "Scopes"): the
# permissions on each FHIR type, every one of them (`Type.p`; a scope of the token's context
# grants them: `patient/` for a patient's token, `system/` for a client's); `-` nothing (no
# patient data, or a Bulk Data job, which is its starting token's alone); `admin` no scope at
# all (only an admin's token without scopes); `every.r` read of every type the server has
# (a summary, a patient's record). A Bulk Data kick-off needs read of the types it exports
# (all four when `_type` names none, as here), a file read of its type.
SCOPE_TABLE = """
GET    /api/v1/instruments                                    -
POST   /api/v1/patients                                       Patient.c
GET    /api/v1/patients                                       Patient.s
GET    /api/v1/patients/{patient_id}                          Patient.r
PATCH  /api/v1/patients/{patient_id}                          Patient.u
POST   /api/v1/patients/{patient_id}/courses                  CarePlan.c
GET    /api/v1/patients/{patient_id}/courses                  CarePlan.s
GET    /api/v1/courses/{course_id}                            CarePlan.r
PATCH  /api/v1/courses/{course_id}                            CarePlan.u
POST   /api/v1/courses/{course_id}/frequency                  CarePlan.u
GET    /api/v1/courses/{course_id}/frequency-history          CarePlan.r
POST   /api/v1/courses/{course_id}/sessions                   Procedure.c
GET    /api/v1/courses/{course_id}/sessions                   Procedure.s
POST   /api/v1/patients/{patient_id}/observations             Observation.c
POST   /api/v1/patients/{patient_id}/observations/batch       Observation.c
GET    /api/v1/patients/{patient_id}/observations             Observation.s
GET    /api/v1/patients/{patient_id}/trends                   Observation.s
GET    /api/v1/courses/{course_id}/recommendation             CarePlan.r
GET    /api/v1/cohort/summary                                 CarePlan.s,Observation.s
POST   /api/v1/tokens                                         admin
DELETE /api/v1/tokens/{token_id}                              admin
GET    /api/v1/audit                                          admin
GET    /api/v1/tokens                                         admin
GET    /api/v1/patients/{patient_id}/summary                  every.r
POST   /api/v1/clients                                        admin
GET    /api/v1/clients                                        admin
DELETE /api/v1/clients/{client_id}                            admin
POST   /api/v1/webhooks                                       admin
GET    /api/v1/webhooks                                       admin
GET    /api/v1/webhooks/{webhook_id}/deliveries               admin
POST   /api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/resend  admin
DELETE /api/v1/webhooks/{webhook_id}                          admin
POST   /api/v1/patients/{patient_id}/enrolments               admin
GET    /api/v1/patients/{patient_id}/devices                  Patient.r
DELETE /api/v1/patients/{patient_id}/devices/{device_id}      admin
GET    /api/v1/me                                             -
GET    /fhir/R4/metadata                                      -
GET    /fhir/R4/.well-known/smart-configuration               -
GET    /.well-known/smart-configuration                       -
GET    /fhir/R4/Patient                                       Patient.s
GET    /fhir/R4/Patient/{patient_id}                          Patient.r
GET    /fhir/R4/Patient/{patient_id}/$everything              every.r
GET    /fhir/R4/Observation                                   Observation.s
GET    /fhir/R4/Procedure                                     Procedure.s
GET    /fhir/R4/CarePlan                                      CarePlan.s
GET    /fhir/R4/$export                                       every.r
GET    /fhir/R4/Patient/$export                               every.r
GET    /fhir/R4/$export-status/{job_id}                       -
DELETE /fhir/R4/$export-status/{job_id}                       -
GET    /fhir/R4/$export-file/{job_id}/{resource_type}.ndjson  Observation.r
GET    /fhir/R4/SubscriptionTopic                             -
POST   /fhir/R4/Subscription                                  CarePlan.r
GET    /fhir/R4/Subscription/{subscription_id}                CarePlan.r
GET    /fhir/R4/Subscription/{subscription_id}/$status        CarePlan.r
DELETE /fhir/R4/Subscription/{subscription_id}                CarePlan.r
"""
PATIENT_APP_SCOPE = "patient/*.rs patient/Observation.c"  # what an enrolled app's token holds

Route = tuple[str, str]  # (method, path template)
Mark = Literal["x", ".", "own", "open"]
Subject = Literal["path", "course", "query", "new", "self", "-"]
Target = Literal["own", "other", "none"]  # whose data the request names (`none`: no patient)
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@dataclass(frozen=True)
class Audited:
    action: str
    resource_type: str
    subject: Subject


def _rows(table: str, width: int) -> dict[Route, list[str]]:
    rows: dict[Route, list[str]] = {}
    for line in table.splitlines():
        if not line.strip() or line.startswith(" "):  # blank, or the header
            continue
        method, path, *cells = line.split()
        assert len(cells) == width, f"{line!r}: {len(cells)} cells, not {width}"
        assert (method, path) not in rows, f"{method} {path} twice"
        rows[(method, path)] = cells
    return rows


def _contract() -> dict[Route, dict[str, Mark]]:
    marks = get_args(Mark)
    contract = {}
    for route, cells in _rows(CONTRACT_TABLE, len(ROLES)).items():
        assert set(cells) <= set(marks), f"{route}: marks are {marks}"
        contract[route] = {role: cast(Mark, cell) for role, cell in zip(ROLES, cells, strict=True)}
    return contract


def _audit() -> dict[Route, Audited | None]:
    audit: dict[Route, Audited | None] = {}
    for route, (action, resource_type, subject) in _rows(AUDIT_TABLE, 3).items():
        assert subject in get_args(Subject), f"{route}: {subject}"
        audited = Audited(action, resource_type, cast(Subject, subject))
        audit[route] = None if action == "-" else audited
    return audit


def _scopes() -> dict[Route, list[str] | None]:
    """Each route's needed permissions (`Type.p`), or None for `admin` (no scope grants it)."""
    every = [f"{t}.r" for t in ("Patient", "CarePlan", "Procedure", "Observation")]
    needs: dict[Route, list[str] | None] = {}
    for route, (cell,) in _rows(SCOPE_TABLE, 1).items():
        if cell == "admin":
            needs[route] = None
        else:
            parts = [] if cell == "-" else cell.split(",")
            needs[route] = [n for part in parts for n in (every if part == "every.r" else [part])]
    return needs


CONTRACT = _contract()
AUDIT = _audit()
SCOPES = _scopes()


def test_every_route_has_a_row_and_every_row_is_a_route(app: FastAPI) -> None:
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith(("/api/", "/fhir/", "/.well-known/"))
        for method in operations
        if method in HTTP_METHODS
    }
    assert routes, "no routes found"
    missing = sorted(routes - CONTRACT.keys())
    assert not missing, f"routes with no row in CONTRACT_TABLE (write one from the docs): {missing}"
    stale = sorted(CONTRACT.keys() - routes)
    assert not stale, f"rows for routes that do not exist: {stale}"
    assert AUDIT.keys() == CONTRACT.keys(), "CONTRACT_TABLE and AUDIT_TABLE name other routes"
    assert SCOPES.keys() == CONTRACT.keys(), "CONTRACT_TABLE and SCOPE_TABLE name other routes"


# --- one set of patients, courses, tokens and export jobs for the module -------------------


@dataclass
class World:
    app: FastAPI
    engine: AsyncEngine
    clients: dict[str, httpx.AsyncClient]  # one per role; the patient's is bound to `own`
    patients: dict[str, str]  # own, other
    courses: dict[str, str]  # own, other: a course of each patient
    token_id: str  # a token for DELETE /tokens/{id} (revoking it again is a 204 too)
    device_id: str  # an enrolled device of `own` (revoking it again is a 204 too)
    read_job: str  # an export job of the integration token's: it and admins may read it
    cancel_jobs: dict[str, str]  # role → a job it may cancel (admin's, integration's own)
    client_id: str  # a registered client for DELETE /clients/{id} (again: a 204 too)
    serial: itertools.count[int]  # makes each recorded time different
    webhook_id: str  # a webhook with one delivery (deleted last: its row comes last)
    delivery_id: str
    subscriptions: dict[str, str]  # role → a FHIR Subscription of its own (admin, integration)

    def call(self, route: Route, role: str, target: Target, job: str | None = None) -> Call:
        method, template = route
        whose = "other" if target == "other" else "own"
        patient, course = self.patients[whose], self.courses[whose]
        if job is None:
            job = self.cancel_jobs.get(role, self.read_job) if method == "DELETE" else self.read_job
        url = template.format(
            patient_id=patient, course_id=course, token_id=self.token_id, job_id=job,
            resource_type="Observation", webhook_id=self.webhook_id,
            delivery_id=self.delivery_id,
            subscription_id=self.subscriptions.get(role, self.subscriptions["integration"]),
            device_id=self.device_id, client_id=self.client_id,
        )  # fmt: skip
        audited = AUDIT[route]
        params, headers = {}, {}
        if audited is not None and audited.subject == "query" and target != "none":
            # Both forms FHIR allows: a bare id for one's own, a reference for the other's.
            params["patient"] = patient if target == "own" else f"Patient/{patient}"
        if template.endswith("$export"):
            headers["Prefer"] = "respond-async"
        named = bool(params) or "{patient_id}" in template or "{course_id}" in template
        body = _body(route, next(self.serial))
        return Call(method, url, params, headers, body, patient if named else None)


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any] | None
    patient: str | None  # the patient the request names, in its path, course or query


def _body(route: Route, serial: int) -> dict[str, Any] | None:
    """A valid body for each writing route, so that an allowed request really writes."""
    when = (datetime.now(UTC) - timedelta(hours=2, minutes=serial)).isoformat()
    # An ODI score fits lumbar courses only, and the routes here add cervical ones: it is never
    # a value two courses could claim (that would be a 422 asking for its course_id).
    observation = {"instrument": "odi", "value": serial % 101, "recorded_at": when}
    bodies: dict[Route, dict[str, Any]] = {
        ("POST", "/api/v1/patients"): {"name": f"Contract Patient {serial}"},
        ("PATCH", "/api/v1/patients/{patient_id}"): {"condition": f"condition {serial}"},
        ("POST", "/api/v1/patients/{patient_id}/courses"): {
            "indication": "spondylosis", "region": "cervical", "technique": "paravertebral",
            "start_date": (datetime.now(UTC) - timedelta(days=3)).date().isoformat(),
        },
        ("PATCH", "/api/v1/courses/{course_id}"): {"notes": f"note {serial}"},
        ("POST", "/api/v1/courses/{course_id}/frequency"): {
            "sessions_per_week": 1 + serial % 3, "reason": "contract"
        },
        ("POST", "/api/v1/courses/{course_id}/sessions"): {"performed_at": when},
        ("POST", "/api/v1/patients/{patient_id}/observations"): observation,
        ("POST", "/api/v1/patients/{patient_id}/observations/batch"): {
            "observations": [observation]
        },
        ("POST", "/api/v1/tokens"): {"role": "dashboard"},
        ("POST", "/api/v1/webhooks"): {
            "url": "https://receiver.example/hook", "events": ["observation.created"]
        },
        ("POST", "/fhir/R4/Subscription"): _SUBSCRIPTION,
        ("POST", "/api/v1/patients/{patient_id}/enrolments"): {"expires_in_hours": 1},
        ("POST", "/api/v1/clients"): client_body(ec_signer(), name=f"Client {serial}"),
    }  # fmt: skip
    return bodies.get(route)


@pytest.fixture(scope="module")
async def world(app: FastAPI) -> AsyncIterator[World]:
    engine = app_state(app).engine

    async def issue(role: str, patient_id: str | None = None) -> tuple[str, str]:
        """A real token, issued as `outcomes tokens create` does: (secret, id)."""
        async with create_sessionmaker(engine)() as session, session.begin():
            issued = await TokenService(session).issue(
                role, uuid.UUID(patient_id) if patient_id else None
            )
        return issued.token, str(issued.row.id)

    staff = client_of(app, (await issue("clinician"))[0])
    patients, courses = {}, {}
    for whose in ("own", "other"):
        patient = await create_patient(staff, name=f"Contract {whose}", external_id=f"MRN-{whose}")
        course = await create_course(staff, patient["id"])
        await create_session(staff, course["id"])
        await create_observation(staff, patient["id"], course_id=course["id"])
        patients[whose], courses[whose] = patient["id"], course["id"]
    await staff.aclose()
    clients = {}
    for role in ROLES:
        secret, _ = await issue(role, patients["own"] if role == "patient" else None)
        clients[role] = client_of(app, secret)

    async def export_job(role: str) -> str:
        response = await clients[role].get(
            "/fhir/R4/$export", params={"_type": "Observation"}, headers={"Prefer": "respond-async"}
        )
        assert response.status_code == 202, response.text
        return response.headers["content-location"].rsplit("/", 1)[-1]

    read_job = await export_job("integration")
    cancel_jobs = {role: await export_job(role) for role in ("admin", "integration")}
    _, token_id = await issue("dashboard")
    webhook_id, delivery_id = await _webhook_with_a_delivery(engine, clients["admin"])
    subscriptions = {}
    for role in ("admin", "integration"):
        made = await clients[role].post("/fhir/R4/Subscription", json=_SUBSCRIPTION)
        assert made.status_code == 201, made.text
        subscriptions[role] = made.json()["id"]
    device_id = await enrolled_device(app, clients["clinician"], patients["own"])
    client_id = await register(clients["admin"], ec_signer(), name="Contract EHR")
    yield World(
        app=app, engine=engine, clients=clients, patients=patients, courses=courses,
        token_id=token_id, device_id=device_id, read_job=read_job, cancel_jobs=cancel_jobs,
        client_id=client_id, serial=itertools.count(), webhook_id=webhook_id,
        delivery_id=delivery_id, subscriptions=subscriptions,
    )  # fmt: skip
    for client in clients.values():
        await client.aclose()
    await empty_tables(engine)


_SUBSCRIPTION = {
    "resourceType": "Subscription",
    "reason": "contract",
    "criteria": "https://outcomes.example/fhir/SubscriptionTopic/careplan-frequency",
    "channel": {"type": "rest-hook", "endpoint": "https://ehr.example/hook"},
}


async def _webhook_with_a_delivery(
    engine: AsyncEngine, admin: httpx.AsyncClient
) -> tuple[str, str]:
    """A webhook (made over the API) and a delivery of the first event (as the dispatcher,
    which the test app does not run, would fan it out)."""
    made = await admin.post(
        "/api/v1/webhooks",
        json={"url": "https://receiver.example/hook", "events": ["observation.created"]},
    )
    assert made.status_code == 201, made.text
    webhook_id = uuid.UUID(made.json()["id"])
    async with create_sessionmaker(engine)() as session, session.begin():
        seq = await session.scalar(select(OutboxEvent.seq).order_by(OutboxEvent.seq).limit(1))
        assert seq is not None
        delivery = PushDelivery(
            id=uuid.uuid4(), subscription_id=webhook_id, event_seq=seq, stream_id=uuid.uuid4(),
            number=1, status="failed", attempts=1, next_attempt_at=datetime.now(UTC),
            retry_until=datetime.now(UTC), created_at=datetime.now(UTC),
        )  # fmt: skip
        session.add(delivery)
    return str(webhook_id), str(delivery.id)


async def enrolled_device(app: FastAPI, staff: httpx.AsyncClient, patient_id: str) -> str:
    """A device of the patient, enrolled as an app does it: a code exchanged at /oauth/token."""
    code = (await staff.post(f"/api/v1/patients/{patient_id}/enrolments", json={})).json()["code"]
    form = {
        "grant_type": "urn:outcomes:grant-type:enrolment-code",
        "code": code,
        "device_name": "phone",
    }
    async with client_of(app) as enrolling:
        assert (await enrolling.post("/oauth/token", data=form)).status_code == 200
    devices = (await staff.get(f"/api/v1/patients/{patient_id}/devices")).json()["items"]
    device_id: str = devices[0]["id"]
    return device_id


# --- the checks ------------------------------------------------------------------------------


async def send(world: World, role: str, call: Call) -> httpx.Response:
    return await world.clients[role].request(
        call.method, call.url, params=call.params, headers=call.headers, json=call.body
    )


async def assert_audited(
    world: World, route: Route, role: str, call: Call, response: httpx.Response, allowed: bool
) -> None:
    """The request left exactly the audit row AUDIT_TABLE describes (or none, if it says so)."""
    request_id = response.headers["x-request-id"]
    async with world.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    AuditEvent.role,
                    AuditEvent.action,
                    AuditEvent.resource_type,
                    AuditEvent.patient_id,
                    AuditEvent.outcome,
                    AuditEvent.status,
                ).where(AuditEvent.request_id == request_id)
            )
        ).all()
    audited = AUDIT[route]
    if audited is None:
        assert rows == [], f"{route} is not audited, but left {rows}"
        return
    if audited.subject == "new":
        patient = response.json()["id"] if allowed else None
    elif audited.subject == "self":
        patient = world.patients["own"] if role == "patient" else None
    else:
        patient = None if audited.subject == "-" else call.patient
    expected = (
        role,
        audited.action,
        audited.resource_type,
        uuid.UUID(patient) if patient else None,
        "allowed" if allowed else "denied",
        response.status_code,
    )
    assert [tuple(row) for row in rows] == [expected], (role, route)


def _cell_id(route: Route, role: str) -> str:
    return f"{role} {route[0]} {route[1]}"


CELLS = [(route, role) for route in CONTRACT for role in ROLES]


@pytest.mark.parametrize(("route", "role"), CELLS, ids=[_cell_id(*cell) for cell in CELLS])
async def test_each_role_on_each_route(world: World, route: Route, role: str) -> None:
    """A "no" is a 403; a "yes" (and "own", on the token's own patient) succeeds."""
    allowed = CONTRACT[route][role] != "."  # x, own, open
    call = world.call(route, role, "own")
    response = await send(world, role, call)
    if allowed:
        assert 200 <= response.status_code < 300, (role, route, response.text[:300])
    else:
        assert response.status_code == 403, (role, route, response.text[:300])
    await assert_audited(world, route, role, call, response, allowed)


# Every route that names a patient: in its path, through a course, or in a FHIR search.
NAMING = [
    route
    for route, audited in AUDIT.items()
    if "{patient_id}" in route[1]
    or "{course_id}" in route[1]
    or (audited is not None and audited.subject == "query")
]


@pytest.mark.parametrize("route", NAMING, ids=[f"{m} {p}" for m, p in NAMING])
async def test_a_patient_token_on_another_patients_data(world: World, route: Route) -> None:
    """`own` routes answer 404 for another patient (as for an id that does not exist); the
    routes a patient may not use at all stay a 403."""
    call = world.call(route, "patient", "other")
    response = await send(world, "patient", call)
    expected = 404 if CONTRACT[route]["patient"] == "own" else 403
    assert response.status_code == expected, (route, response.text[:300])
    for secret in ("Contract other", "MRN-other"):
        assert secret not in response.text
    await assert_audited(world, route, "patient", call, response, allowed=False)


SEARCHES = [route for route, audited in AUDIT.items() if audited and audited.subject == "query"]
SEARCH_CELLS = [(route, role) for route in SEARCHES for role in ROLES]


@pytest.mark.parametrize(
    ("route", "role"), SEARCH_CELLS, ids=[_cell_id(*cell) for cell in SEARCH_CELLS]
)
async def test_a_search_naming_no_patient(world: World, route: Route, role: str) -> None:
    """It covers every patient: a patient token must name its own (else 404, docs/fhir.md)."""
    mark = CONTRACT[route][role]
    call = world.call(route, role, "none")
    response = await send(world, role, call)
    expected = {"x": 200, ".": 403, "own": 404, "open": 200}[mark]
    assert response.status_code == expected, (role, route, response.text[:300])
    await assert_audited(world, route, role, call, response, allowed=mark == "x")


# --- SMART scopes ------------------------------------------------------------------------------

OPEN = [route for route in CONTRACT if set(CONTRACT[route].values()) == {"open"}]
SCOPED = [route for route in CONTRACT if route not in OPEN and SCOPES[route] is not None]
ADMINISTRATION = [route for route in CONTRACT if SCOPES[route] is None]
# The role a scoped token of each route has: the first that may use the route (a client's
# roles first). Bulk Data jobs are their starting token's: an admin's token reads any.
SCOPED_ROLES = ("integration", "dashboard", "patient", "clinician", "admin")


def _scoped_role(route: Route) -> str:
    if "{job_id}" in route[1]:
        return "admin"
    return next(role for role in SCOPED_ROLES if CONTRACT[route][role] in ("x", "own"))


def _scope_of(role: str, needed: list[str]) -> str:
    """A scope granting exactly ``needed`` (`Type.p` each) to a token of ``role``; with nothing
    needed, one granting something no route here needs."""
    context = "patient" if role == "patient" else "system"
    return " ".join(f"{context}/{need}" for need in needed) or f"{context}/Procedure.d"


async def _send_scoped(
    world: World, route: Route, role: str, scope: str
) -> tuple[Call, httpx.Response]:
    token = await issue_scoped(
        world.engine, role, scope, world.patients["own"] if role == "patient" else None
    )
    job = None
    if "{job_id}" in route[1]:  # a job of its own to read, download or cancel
        job = await _export_job(world.clients["admin"])
    call = world.call(route, role, "own", job=job)
    async with client_of(world.app, token) as scoped:
        if "{subscription_id}" in route[1]:
            # A Subscription is its token's alone: one of its own, when its scope may make one
            # (when not, the scope's 403 comes before the 404 of another token's).
            made = await scoped.post("/fhir/R4/Subscription", json=_SUBSCRIPTION)
            if made.status_code == 201:
                theirs = world.subscriptions.get(role, world.subscriptions["integration"])
                call = replace(call, url=call.url.replace(theirs, made.json()["id"]))
        response = await scoped.request(
            call.method, call.url, params=call.params, headers=call.headers, json=call.body
        )
    return call, response


async def _export_job(admin: httpx.AsyncClient) -> str:
    response = await admin.get(
        "/fhir/R4/$export", params={"_type": "Observation"}, headers={"Prefer": "respond-async"}
    )
    assert response.status_code == 202, response.text
    return response.headers["content-location"].rsplit("/", 1)[-1]


def _route_id(route: Route) -> str:
    return f"{route[0]} {route[1]}"


@pytest.mark.parametrize("route", SCOPED, ids=[_route_id(r) for r in SCOPED])
async def test_a_scoped_token_holding_what_a_route_needs(world: World, route: Route) -> None:
    role = _scoped_role(route)
    needed = SCOPES[route]
    assert needed is not None
    call, response = await _send_scoped(world, route, role, _scope_of(role, needed))
    assert 200 <= response.status_code < 300, (role, route, response.text[:300])
    await assert_audited(world, route, role, call, response, allowed=True)


NEEDS_EACH = [
    (route, need) for route in SCOPED for need in (SCOPES[route] or [])
]  # fmt: skip


@pytest.mark.parametrize(
    ("route", "need"), NEEDS_EACH, ids=[f"{_route_id(r)} without {n}" for r, n in NEEDS_EACH]
)
async def test_a_scoped_token_lacking_any_part_of_it_is_a_403(
    world: World, route: Route, need: str
) -> None:
    role = _scoped_role(route)
    needed = SCOPES[route]
    assert needed is not None
    # what the route needs but this one, and everything else of every other type
    others = [n for n in needed if n != need]
    resource_type, permission = need.split(".")
    rest = "".join(p for p in "cruds" if p != permission)
    scope = _scope_of(role, [*others, f"{resource_type}.{rest}"])
    call, response = await _send_scoped(world, route, role, scope)
    assert response.status_code == 403, (role, route, response.text[:300])
    await assert_audited(world, route, role, call, response, allowed=False)


@pytest.mark.parametrize("route", ADMINISTRATION, ids=[_route_id(r) for r in ADMINISTRATION])
async def test_no_scope_opens_the_administration(world: World, route: Route) -> None:
    """Even an admin-role token with every scope: administration takes an admin's own token."""
    call, response = await _send_scoped(world, route, "admin", "system/*.* user/*.*")
    assert response.status_code == 403, (route, response.text[:300])
    await assert_audited(world, route, "admin", call, response, allowed=False)


PATIENT_ROUTES = [route for route in CONTRACT if route not in OPEN]


@pytest.mark.parametrize("route", PATIENT_ROUTES, ids=[_route_id(r) for r in PATIENT_ROUTES])
async def test_a_patient_app_token_does_what_a_patient_token_does(
    world: World, route: Route
) -> None:
    """An enrolled app's token (role patient, `patient/*.rs patient/Observation.c`): where a
    patient token may go it may too, on its own patient; elsewhere a 403, as for the token."""
    call, response = await _send_scoped(world, route, "patient", PATIENT_APP_SCOPE)
    allowed = CONTRACT[route]["patient"] != "."
    if allowed:
        assert 200 <= response.status_code < 300, (route, response.text[:300])
    else:
        assert response.status_code == 403, (route, response.text[:300])
    await assert_audited(world, route, "patient", call, response, allowed)


@pytest.mark.parametrize("route", OPEN, ids=[_route_id(r) for r in OPEN])
async def test_open_routes_need_no_token(world: World, route: Route) -> None:
    call = world.call(route, "admin", "none")
    async with client_of(world.app) as anonymous:
        response = await anonymous.get(call.url)
    assert response.status_code == 200, response.text
    assert AUDIT[route] is None
