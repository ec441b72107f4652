"""FHIR Bulk Data export: kick-off, status (manifest), ndjson files, access and errors."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit.models import AuditEvent
from app.core.state import app_state
from tests.factories import create_course, create_observation, create_patient, create_session
from tests.fhir.support import RoleClient, assert_outcome, assert_valid

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
NDJSON = "application/fhir+ndjson"


@pytest.fixture(autouse=True)
def _small_batches(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files span several batches even with a handful of rows (the keyset paging is used)."""
    monkeypatch.setattr(app_state(app).settings, "export_batch_size", 2)


async def _record(client: httpx.AsyncClient, name: str) -> dict[str, list[str]]:
    """A patient with a course, two sessions and three observations."""
    patient = await create_patient(client, name=name)
    course = await create_course(client, patient["id"], adjustment="confirm")
    sessions = [await create_session(client, course["id"]) for _ in range(2)]
    observations = [
        await create_observation(client, patient["id"], value=6, course_id=course["id"]),
        await create_observation(client, patient["id"], instrument="ndi", value=30),
        await create_observation(client, patient["id"], instrument="pain-vas", value=55),
    ]
    return {
        "Patient": [patient["id"]],
        "CarePlan": [course["id"]],
        "Procedure": [s["id"] for s in sessions],
        "Observation": [o["id"] for o in observations],
    }


def _merge(*records: dict[str, list[str]]) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for record in records:
        for name, ids in record.items():
            merged.setdefault(name, []).extend(ids)
    return {name: sorted(ids) for name, ids in merged.items()}


async def kick_off(
    client: httpx.AsyncClient, path: str = "$export", **params: Any
) -> httpx.Response:
    return await client.get(f"/fhir/R4/{path}", params=params or None, headers=ASYNC)


async def poll(client: httpx.AsyncClient, status_url: str) -> dict[str, Any]:
    """Poll the status URL until the export is complete (202 means in progress)."""
    for _ in range(20):
        response = await client.get(status_url)
        if response.status_code == 200:
            assert response.headers["content-type"].startswith("application/json")
            assert "expires" in response.headers
            body: dict[str, Any] = response.json()
            return body
        assert response.status_code == 202, response.text
    raise AssertionError("export never completed")


async def download(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    """A file, streamed: every line one valid FHIR resource."""
    resources = []
    async with client.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(NDJSON)
        async for line in response.aiter_lines():
            if line:
                resources.append(assert_valid(json.loads(line)))
    return resources


async def export(
    client: httpx.AsyncClient, path: str = "$export", **params: Any
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Kick-off, poll to completion, download every file: the manifest and the files."""
    response = await kick_off(client, path, **params)
    assert response.status_code == 202, response.text
    status_url = response.headers["content-location"]
    assert status_url.startswith("http://test/fhir/R4/$export-status/")
    manifest = await poll(client, status_url)
    files = {item["type"]: await download(client, item["url"]) for item in manifest["output"]}
    return manifest, files


def _ids(files: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, resources in files.items():
        assert {r["resourceType"] for r in resources} <= {name}, name
        grouped[name] = sorted(r["id"] for r in resources)
    return grouped


async def test_export_polled_to_completion_and_every_line_validates(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    created = _merge(await _record(client, "One"), await _record(client, "Two"))
    manifest, files = await export(ehr)
    assert manifest["requiresAccessToken"] is True
    assert manifest["error"] == []
    assert manifest["request"].startswith("http://test/fhir/R4/$export")
    assert manifest["transactionTime"].endswith("Z")
    assert [item["type"] for item in manifest["output"]] == [
        "Patient",
        "CarePlan",
        "Procedure",
        "Observation",
    ]
    assert _ids(files) == created
    assert Counter({k: len(v) for k, v in files.items()}) == Counter(
        {"Patient": 2, "CarePlan": 2, "Procedure": 4, "Observation": 6}
    )


async def test_type_limits_the_files(client: httpx.AsyncClient, ehr: httpx.AsyncClient) -> None:
    created = await _record(client, "One")
    manifest, files = await export(ehr, _type="Observation")
    assert [item["type"] for item in manifest["output"]] == ["Observation"]
    assert _ids(files) == {"Observation": sorted(created["Observation"])}
    manifest, files = await export(ehr, _type="Procedure,Patient")
    assert [item["type"] for item in manifest["output"]] == ["Patient", "Procedure"]


async def test_since_leaves_out_older_records(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    await _record(client, "Old")
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    new = await _record(client, "New")
    _manifest, files = await export(ehr, _since=since)
    assert _ids(files) == {name: sorted(ids) for name, ids in new.items()}


async def test_records_after_the_kick_off_are_not_in_immutable_files(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    record = await _record(client, "One")
    response = await kick_off(ehr, _type="Observation,Procedure")
    manifest = await poll(ehr, response.headers["content-location"])
    await create_observation(client, record["Patient"][0], value=2)
    await create_session(client, record["CarePlan"][0])
    files = {item["type"]: await download(ehr, item["url"]) for item in manifest["output"]}
    assert len(files["Observation"]) == 3
    assert len(files["Procedure"]) == 2


async def test_patient_export_is_the_patient_compartment(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    created = _merge(await _record(client, "One"), await _record(client, "Two"))
    _manifest, files = await export(ehr, "Patient/$export")
    assert _ids(files) == created


async def test_admin_exports_and_the_export_is_audited(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    created = await _record(client, "One")
    status_url = (await kick_off(admin, _type="Patient")).headers["content-location"]
    manifest = await poll(admin, status_url)
    assert [r["id"] for r in await download(admin, manifest["output"][0]["url"])] == created[
        "Patient"
    ]
    job_id = status_url.rsplit("/", 1)[1]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(AuditEvent.action, AuditEvent.resource_type, AuditEvent.status).where(
                    AuditEvent.resource_id == job_id
                )
            )
        ).all()
    assert sorted(tuple(row) for row in rows) == [
        ("export", "bulk-export", 200),
        ("export", "bulk-export", 202),
        ("read", "bulk-export", 200),
    ]


async def test_an_empty_export_has_empty_files(ehr: httpx.AsyncClient) -> None:
    _manifest, files = await export(ehr)
    assert files == {"Patient": [], "CarePlan": [], "Procedure": [], "Observation": []}


@pytest.mark.parametrize(
    ("headers", "params", "where"),
    [
        ({}, {}, "respond-async"),
        ({"Prefer": "respond-sync"}, {}, "respond-async"),
        (ASYNC, {"_type": "Encounter"}, "_type"),
        (ASYNC, {"_type": "Observation,Medication"}, "_type"),
        (ASYNC, {"_since": "yesterday"}, "_since"),
        (ASYNC, {"_since": "2026-01-01"}, "_since"),  # a date, not an instant
        (ASYNC, {"_outputFormat": "text/csv"}, "_outputFormat"),
        (ASYNC, {"_typeFilter": "Observation?code=x"}, "_typeFilter"),
    ],
)
async def test_bad_kick_off_is_a_400_outcome(
    ehr: httpx.AsyncClient, headers: dict[str, str], params: dict[str, str], where: str
) -> None:
    response = await ehr.get("/fhir/R4/$export", params=params, headers=headers)
    body = assert_outcome(response, 400, "invalid")
    assert where in body["issue"][0]["diagnostics"]


async def test_output_format_ndjson_and_lenient_unknown_params_are_accepted(
    ehr: httpx.AsyncClient,
) -> None:
    for fmt in ("application/fhir+ndjson", "application/ndjson", "ndjson"):
        assert (await kick_off(ehr, _outputFormat=fmt)).status_code == 202
    response = await ehr.get(
        "/fhir/R4/$export",
        params={"_elements": "id"},
        headers={"Prefer": "respond-async, handling=lenient"},
    )
    assert response.status_code == 202


@pytest.mark.parametrize("role", ["patient", "clinician", "dashboard"])
async def test_other_roles_are_403(
    client: httpx.AsyncClient, as_role: RoleClient, ehr: httpx.AsyncClient, role: str
) -> None:
    patient = await create_patient(client, name="Own")
    other = await as_role(role, patient["id"] if role == "patient" else None)
    for path in ("$export", "Patient/$export"):
        assert_outcome(await kick_off(other, path), 403, "forbidden")
    status_url = (await kick_off(ehr)).headers["content-location"]
    manifest = await poll(ehr, status_url)
    assert_outcome(await other.get(status_url), 403, "forbidden")
    assert_outcome(await other.get(manifest["output"][0]["url"]), 403, "forbidden")


async def test_a_job_is_its_token_s_alone(
    client: httpx.AsyncClient, as_role: RoleClient, ehr: httpx.AsyncClient
) -> None:
    await _record(client, "One")
    status_url = (await kick_off(ehr)).headers["content-location"]
    manifest = await poll(ehr, status_url)
    stranger = await as_role("integration")
    assert_outcome(await stranger.get(status_url), 404, "not-found")
    assert_outcome(await stranger.delete(status_url), 404, "not-found")
    for item in manifest["output"]:
        assert_outcome(await stranger.get(item["url"]), 404, "not-found")
    # an admin may read any job
    admin = await as_role("admin")
    assert (await admin.get(status_url)).status_code == 200


async def test_cancel_forgets_the_job(ehr: httpx.AsyncClient) -> None:
    status_url = (await kick_off(ehr)).headers["content-location"]
    manifest = await poll(ehr, status_url)
    assert (await ehr.delete(status_url)).status_code == 202
    assert_outcome(await ehr.get(status_url), 404, "not-found")
    assert_outcome(await ehr.get(manifest["output"][0]["url"]), 404, "not-found")
    assert_outcome(await ehr.delete(status_url), 404, "not-found")


async def test_unknown_jobs_and_files_are_404(ehr: httpx.AsyncClient) -> None:
    # A job id is a UUID and a file one of the exported types (the OpenAPI schema says so).
    assert_outcome(await ehr.get("/fhir/R4/$export-status/not-a-uuid"), 400, "invalid")
    missing = "/fhir/R4/$export-status/00000000-0000-4000-8000-000000000000"
    assert_outcome(await ehr.get(missing), 404, "not-found")
    status_url = (await kick_off(ehr, _type="Patient")).headers["content-location"]
    job_id = status_url.rsplit("/", 1)[1]
    assert_outcome(
        await ehr.get(f"/fhir/R4/$export-file/{job_id}/Observation.ndjson"), 404, "not-found"
    )
    assert_outcome(await ehr.get(f"/fhir/R4/$export-file/{job_id}/Nope.ndjson"), 400, "invalid")


async def test_patient_read_still_works_beside_patient_export(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    patient = await create_patient(client, name="Read Me")
    response = await ehr.get(f"/fhir/R4/Patient/{patient['id']}")
    assert response.status_code == 200
    assert response.json()["id"] == patient["id"]
