"""Who reads FHIR: integration and admin tokens everything; a patient token its own compartment
(anything else a 404, as in the business API); clinician and dashboard tokens nothing (403)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.factories import API, create_course, create_observation, create_patient, create_session
from tests.fhir.support import RoleClient, assert_outcome, entries, fhir_body, fhir_get

SECRET = "Hidden Person"


@dataclass
class Two:
    own: str
    other: str


@pytest.fixture
async def two(client: httpx.AsyncClient) -> Two:
    ids = []
    for name in ("Own Person", SECRET):
        patient = await create_patient(client, name=name)
        course = await create_course(client, patient["id"])
        await create_session(client, course["id"])
        await create_observation(client, patient["id"], course_id=course["id"])
        ids.append(patient["id"])
    return Two(*ids)


def paths(patient_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"Patient/{patient_id}", {}),
        (f"Patient/{patient_id}/$everything", {}),
        ("Observation", {"patient": patient_id}),
        ("Procedure", {"patient": f"Patient/{patient_id}"}),
        ("CarePlan", {"patient": patient_id}),
    ]


@pytest.mark.parametrize("role", ["integration", "admin"])
async def test_integration_and_admin_read_everything(
    as_role: RoleClient, two: Two, role: str
) -> None:
    reader = await as_role(role)
    for patient_id in (two.own, two.other):
        for path, params in paths(patient_id):
            await fhir_get(reader, path, **params)
    for resource_type in ("Patient", "Observation", "Procedure", "CarePlan"):
        assert (await fhir_get(reader, resource_type))["total"] == 2  # every patient


@pytest.mark.parametrize("role", ["clinician", "dashboard"])
async def test_clinician_and_dashboard_tokens_may_not_read_fhir(
    as_role: RoleClient, two: Two, role: str
) -> None:
    reader = await as_role(role)
    for path, params in [*paths(two.own), ("Observation", {}), ("Patient", {})]:
        response = await reader.get(f"/fhir/R4/{path}", params=params)
        body = assert_outcome(response, 403, "forbidden")
        assert SECRET not in response.text
        assert role in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("role", ["admin", "clinician", "patient", "integration", "dashboard"])
async def test_every_role_reads_the_capability_statement(
    as_role: RoleClient, two: Two, role: str
) -> None:
    reader = await as_role(role, two.own if role == "patient" else None)
    assert (await fhir_get(reader, "metadata"))["resourceType"] == "CapabilityStatement"


async def test_a_patient_reads_its_own_compartment(as_role: RoleClient, two: Two) -> None:
    """Its searches name it; a Patient search names no one and finds it alone."""
    patient = await as_role("patient", two.own)
    for path, params in [*paths(two.own), ("Patient", {})]:
        response = await patient.get(f"/fhir/R4/{path}", params=params)
        body = fhir_body(response)
        assert SECRET not in response.text
        if body["resourceType"] == "Bundle":
            assert body["total"] >= 1
            for resource in entries(body):
                subject = resource.get("subject", {}).get("reference", f"Patient/{resource['id']}")
                assert subject == f"Patient/{two.own}"


async def test_a_patient_gets_404_for_anything_else(as_role: RoleClient, two: Two) -> None:
    patient = await as_role("patient", two.own)
    attempts: list[tuple[str, Any]] = [
        *paths(two.other),
        # searches without a patient would cover everyone: a patient token must name its own
        ("Observation", {}),
        ("Procedure", {"_count": 1}),
        ("CarePlan", {"patient": "Patient/not-an-id"}),
        ("Observation", {"patient": [two.own, two.other]}),
        ("Observation", {"patient:Patient": two.own}),
    ]
    for path, params in attempts:
        response = await patient.get(f"/fhir/R4/{path}", params=params)
        assert_outcome(response, 404, "not-found")
        assert SECRET not in response.text
    # the same answer as for an id that does not exist
    unknown = await patient.get("/fhir/R4/Patient/00000000-0000-0000-0000-000000000000")
    other = await patient.get(f"/fhir/R4/Patient/{two.other}")
    assert unknown.json() == other.json()


async def test_fhir_reads_are_audited(
    as_role: RoleClient, admin: httpx.AsyncClient, two: Two
) -> None:
    ehr = await as_role("integration")
    patient = await as_role("patient", two.own)
    await fhir_get(ehr, "Observation", patient=f"Patient/{two.other}")
    await fhir_get(ehr, f"Patient/{two.other}/$everything")
    await fhir_get(ehr, "metadata")  # not about a patient: not audited
    await patient.get("/fhir/R4/CarePlan", params={"patient": two.other})
    response = await admin.get(f"{API}/audit", params={"patient_id": two.other, "limit": 500})
    rows = [r for r in response.json()["items"] if r["role"] in ("integration", "patient")]
    assert [
        (r["role"], r["action"], r["resource_type"], r["status"], r["outcome"]) for r in rows
    ] == [
        ("integration", "read", "observation", 200, "allowed"),
        ("integration", "export", "patient-record", 200, "allowed"),
        ("patient", "read", "course", 404, "denied"),
    ]
