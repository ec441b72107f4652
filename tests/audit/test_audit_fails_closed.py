"""The audit row of a request is never silently lost: a malformed id is refused before any
database work and audited; a request whose row cannot be written is refused (503 with
Retry-After and X-Request-ID), whatever it would have answered, and the failure is logged
without PHI."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.service import TokenService
from app.patients.models import Patient
from tests.factories import API, create_course, create_patient
from tests.support import Issue, MakeClient, assert_problem

LONG = "1" * 1000

# (path, token role): ids that are not ids.
MALFORMED = [
    (f"{API}/patients/%00", "clinician"),
    (f"{API}/patients/not-a-uuid", "clinician"),
    (f"{API}/patients/{LONG}", "clinician"),
    (f"{API}/courses/%00/sessions", "clinician"),
    (f"{API}/courses/{'9' * 65}", "clinician"),
    (f"{API}/courses/%00/recommendation", "patient"),
    (f"{API}/tokens/%00", "admin"),
    ("/fhir/R4/Patient/%00", "integration"),
    (f"/fhir/R4/Patient/{LONG}", "integration"),
    (f"/fhir/R4/Patient/{LONG}/$everything", "integration"),
    (f"/fhir/R4/$export-status/{LONG}", "integration"),
]


async def _rows(engine: AsyncEngine, request_id: str) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        stmt = text(
            "SELECT outcome, status, resource_id, patient_id FROM audit_events"
            " WHERE request_id = :rid"
        )
        return [tuple(row) for row in await conn.execute(stmt, {"rid": request_id})]


@pytest.mark.parametrize(("path", "role"), MALFORMED)
async def test_a_malformed_path_id_is_refused_before_any_database_work_and_audited(
    make_client: MakeClient,
    issue_token: Issue,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    role: str,
) -> None:
    patient = await create_patient(make_client(await issue_token("clinician")))
    client = make_client(await issue_token(role, patient["id"] if role == "patient" else None))

    async def no_lookup(self: TokenService, token: str) -> None:
        raise AssertionError("the token was looked up: database work before the refusal")

    monkeypatch.setattr(TokenService, "resolve", no_lookup)
    method = "DELETE" if path.startswith(f"{API}/tokens/") else "GET"
    response = await client.request(method, path)

    fhir = path.startswith("/fhir/")
    assert response.status_code == (400 if fhir else 422), response.text
    if fhir:  # FHIR's OperationOutcome for a bad parameter
        assert response.headers["content-type"].startswith("application/fhir+json")
        assert response.json()["issue"][0]["diagnostics"].startswith("path.")
    else:
        problem = assert_problem(response, 422)
        assert problem["errors"][0]["loc"][0] == "path"
    # One row, denied, naming no id: the malformed one never reaches the database.
    rows = await _rows(engine, response.headers["x-request-id"])
    assert rows == [("denied", response.status_code, None, None)]


@pytest.fixture
async def refused_patient(engine: AsyncEngine) -> AsyncIterator[uuid.UUID]:
    """A patient whose audit rows the database refuses to store (a trigger, as a full disk or
    a revoked grant would): every request about them must fail closed."""
    patient_id = uuid.uuid4()
    sqlite = engine.dialect.name == "sqlite"
    async with engine.begin() as conn:
        if sqlite:  # SQLAlchemy stores a UUID as 32 hex digits there
            # A pooled connection may hold a schema read before another connection dropped
            # an earlier test's trigger, and SQLite checks DDL against that copy: a read of
            # the schema renews it first.
            await conn.execute(text("SELECT count(*) FROM sqlite_master"))
            await conn.execute(
                text(
                    "CREATE TRIGGER test_refuse_audit BEFORE INSERT ON audit_events"
                    f" WHEN NEW.patient_id = '{patient_id.hex}'"
                    " BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
                )
            )
        else:
            await conn.execute(
                text(
                    "CREATE FUNCTION test_refuse_audit() RETURNS trigger LANGUAGE plpgsql"
                    " AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$"
                )
            )
            await conn.execute(
                text(
                    "CREATE TRIGGER test_refuse_audit BEFORE INSERT ON audit_events"
                    f" FOR EACH ROW WHEN (NEW.patient_id = '{patient_id}')"
                    " EXECUTE FUNCTION test_refuse_audit()"
                )
            )
    try:
        yield patient_id
    finally:
        async with engine.begin() as conn:
            if sqlite:
                await conn.execute(text("DROP TRIGGER test_refuse_audit"))
            else:
                await conn.execute(text("DROP TRIGGER test_refuse_audit ON audit_events"))
                await conn.execute(text("DROP FUNCTION test_refuse_audit()"))


async def _patient_named(
    client: httpx.AsyncClient, patient_id: uuid.UUID, engine: AsyncEngine
) -> None:
    """Give the refused patient a row (created under another id, then renamed: its own
    creation would be refused)."""
    created = await create_patient(client, name="Zelda Unaudited", external_id="MRN-UNAUDITED")
    async with engine.begin() as conn:
        rename = update(Patient).where(Patient.id == uuid.UUID(created["id"]))
        await conn.execute(rename.values(id=patient_id))


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert len(response.headers["x-request-id"]) == 32
    assert "Zelda" not in response.text  # nothing of the patient is served
    assert "MRN-UNAUDITED" not in response.text


async def test_a_read_whose_audit_row_cannot_be_written_is_not_served(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    refused_patient: uuid.UUID,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _patient_named(client, refused_patient, engine)
    caplog.set_level(logging.WARNING)
    response = await client.get(f"{API}/patients/{refused_patient}")

    assert_refused(response)
    problem = assert_problem(response, 503)
    assert problem["type"].endswith("audit-unavailable")
    # Logged with the request's id, without the patient's data or the driver's message.
    logged = caplog.text
    assert "audit row not written: GET patient" in logged
    assert f"(request {response.headers['x-request-id']})" in logged
    for leak in ("Zelda", "MRN-UNAUDITED", "audit refused", str(refused_patient)):
        assert leak not in logged


async def test_a_write_whose_audit_row_cannot_be_written_writes_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine, refused_patient: uuid.UUID
) -> None:
    await _patient_named(client, refused_patient, engine)
    course = {"indication": "back pain", "region": "lumbar", "technique": "paravertebral",
              "start_date": "2026-11-01"}  # fmt: skip
    response = await client.post(f"{API}/patients/{refused_patient}/courses", json=course)
    assert_refused(response)
    async with engine.connect() as conn:
        count = await conn.scalar(text("SELECT count(*) FROM courses"))
    assert count == 0


async def test_a_denied_probe_whose_audit_row_cannot_be_written_is_refused_too(
    make_client: MakeClient,
    issue_token: Issue,
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    refused_patient: uuid.UUID,
) -> None:
    await _patient_named(client, refused_patient, engine)
    other = await create_patient(client)
    patient = make_client(await issue_token("patient", other["id"]))
    dashboard = make_client(await issue_token("dashboard"))
    for probe in (patient, dashboard, make_client(None)):  # 404, 403, 401 otherwise
        assert_refused(await probe.get(f"{API}/patients/{refused_patient}"))


async def test_a_fhir_read_whose_audit_row_cannot_be_written_is_not_served(
    make_client: MakeClient, issue_token: Issue, client: httpx.AsyncClient,
    engine: AsyncEngine, refused_patient: uuid.UUID,
) -> None:  # fmt: skip
    await _patient_named(client, refused_patient, engine)
    await create_course(client)  # another patient's data, still served
    ehr = make_client(await issue_token("integration"))
    response = await ehr.get(f"/fhir/R4/Patient/{refused_patient}")
    assert_refused(response)
    assert response.json()["issue"][0]["code"] == "transient"
    everything = await ehr.get(f"/fhir/R4/Patient/{refused_patient}/$everything")
    assert_refused(everything)
