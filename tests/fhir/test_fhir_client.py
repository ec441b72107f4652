"""A real FHIR client (fhirpy) reads a real server, as an EHR would.

The app runs under uvicorn on a free loopback port, in a thread with its own event loop and
engine, on the test database; the EHR side is fhirpy's synchronous client (requests), run in a
worker thread so the test's own loop stays free.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

from tests.factories import ago, create_course, create_observation, create_patient, create_session
from tests.fhir.support import assert_valid
from tests.support import Issue


def valid(resource: Any) -> dict[str, Any]:
    """A fhirpy resource as plain JSON, validated."""
    data: dict[str, Any] = resource.serialize()
    return assert_valid(data)


def ehr_reads(base_url: str, token: str, patient_id: str, missing_id: str) -> dict[str, Any]:
    """What an EHR integration does, with nothing but fhirpy: read the patient, page through
    its pain scores, count them, pull its whole record, and handle the server's errors."""
    fhir = SyncFHIRClient(f"{base_url}/fhir/R4", authorization=f"Bearer {token}")
    seen: dict[str, Any] = {}

    capability = fhir.execute("metadata", method="get")
    seen["fhir_version"] = capability["fhirVersion"]
    assert_valid(capability)

    patient = fhir.reference("Patient", patient_id).to_resource()
    seen["patient"] = valid(patient)

    pain = (
        fhir.resources("Observation")
        .search(patient=f"Patient/{patient_id}", code="http://loinc.org|72514-3")
        .limit(4)
    )
    first_page = pain.fetch()
    seen["first_page"] = len(first_page)
    seen["pain"] = [valid(o) for o in pain]  # follows the `next` links
    seen["total"] = pain.fetch_raw()["total"]

    # fhirpy's count() adds a parameter this server does not know (`_totalMethod`): refused by
    # default, ignored when the client asks for lenient handling.
    try:
        pain.count()
        seen["strict_count"] = "accepted"
    except OperationOutcome as exc:
        seen["strict_count"] = exc.resource["issue"][0]["code"]
    lenient = SyncFHIRClient(
        f"{base_url}/fhir/R4",
        authorization=f"Bearer {token}",
        extra_headers={"Prefer": "handling=lenient"},
    )
    seen["lenient_count"] = (
        lenient.resources("Observation")
        .search(patient=f"Patient/{patient_id}", code="http://loinc.org|72514-3")
        .count()
    )

    everything = fhir.reference("Patient", patient_id).execute("$everything", method="get")
    seen["everything"] = assert_valid(everything)

    procedures = fhir.resources("Procedure").search(patient=patient_id).fetch_all()
    seen["procedures"] = [valid(p) for p in procedures]
    plans = fhir.resources("CarePlan").search(patient=patient_id).fetch_all()
    seen["plans"] = [valid(p) for p in plans]

    try:
        fhir.reference("Patient", missing_id).to_resource()
        seen["missing"] = "found"
    except ResourceNotFound as exc:
        seen["missing"] = str(exc)
    return seen


async def test_an_ehr_reads_the_server_with_fhirpy(
    client: httpx.AsyncClient, issue_token: Issue, live_server: str
) -> None:
    patient = await create_patient(client, name="Grace Hopper", external_id="MRN-EHR-1")
    course = await create_course(client, patient["id"], adjustment="confirm")
    session = await create_session(client, course["id"], sites=["L5-S1 left"], volume_ml=10)
    pain_ids = [
        (
            await create_observation(
                client, patient["id"], value=8 - i // 2, recorded_at=ago(hours=30 - i)
            )
        )["id"]
        for i in range(10)
    ]
    await create_observation(client, patient["id"], instrument="schober", value=3.5)
    token = await issue_token("integration")
    missing = str(uuid.uuid4())

    seen = await asyncio.to_thread(ehr_reads, live_server, token, patient["id"], missing)

    assert seen["fhir_version"] == "4.0.1"
    assert seen["patient"]["name"] == [{"text": "Grace Hopper"}]
    assert seen["patient"]["identifier"][0]["value"] == "MRN-EHR-1"
    assert seen["first_page"] == 4
    assert sorted(o["id"] for o in seen["pain"]) == sorted(pain_ids)  # 3 pages: 4, 4, 2
    assert all(o["code"]["coding"][0]["code"] == "72514-3" for o in seen["pain"])
    assert seen["total"] == 10
    assert seen["strict_count"] == "invalid"
    assert seen["lenient_count"] == 10
    assert seen["everything"]["total"] == 1 + 1 + 1 + 11
    assert [p["id"] for p in seen["procedures"]] == [session["id"]]
    assert seen["procedures"][0]["bodySite"] == [{"text": "L5-S1 left"}]
    assert [p["id"] for p in seen["plans"]] == [course["id"]]
    assert "not-found" in seen["missing"]
