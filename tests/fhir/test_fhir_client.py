"""A real FHIR client (fhirpy) reads a real server, as an EHR would.

The app runs under uvicorn on a free loopback port, in a thread with its own event loop and
engine, on the test database; the EHR side is fhirpy's synchronous client (requests), run in a
worker thread so the test's own loop stays free.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime
from typing import Any

import httpx
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

from app.fhir import terminology as t
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

    # fhirpy's count() sends `_count=0&_totalMethod=count`: the total alone
    seen["count"] = pain.count()
    try:
        pain.search(_elements="id").fetch()  # a parameter this server does not know
        seen["unknown"] = "accepted"
    except OperationOutcome as exc:
        seen["unknown"] = exc.resource["issue"][0]["code"]
    lenient = SyncFHIRClient(
        f"{base_url}/fhir/R4",
        authorization=f"Bearer {token}",
        extra_headers={"Prefer": "handling=lenient"},
    )
    seen["lenient"] = len(
        lenient.resources("Observation")
        .search(patient=f"Patient/{patient_id}", code="http://loinc.org|72514-3", _elements="id")
        .fetch_all()
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
    assert seen["count"] == 10
    assert seen["unknown"] == "invalid"  # refused by default (400), ignored when lenient
    assert seen["lenient"] == 10
    assert seen["everything"]["total"] == 1 + 1 + 1 + 11
    assert [p["id"] for p in seen["procedures"]] == [session["id"]]
    assert seen["procedures"][0]["bodySite"] == [{"text": "L5-S1 left"}]
    assert [p["id"] for p in seen["plans"]] == [course["id"]]
    assert "not-found" in seen["missing"]


def ehr_searches(base_url: str, token: str, mrn: str) -> dict[str, Any]:
    """FHIR search v2 with nothing but fhirpy: find the patient by MRN, count its scores,
    take one day's, sort them both ways, and include the patient."""
    fhir = SyncFHIRClient(f"{base_url}/fhir/R4", authorization=f"Bearer {token}")
    seen: dict[str, Any] = {}

    patients = fhir.resources("Patient")
    patient = patients.search(identifier=f"{t.PATIENT_IDENTIFIER_SYSTEM}|{mrn}").get()
    seen["patient"] = valid(patient)
    seen["by_mrn"] = [p.id for p in patients.search(identifier=mrn).fetch_all()]
    seen["other_system"] = patients.search(identifier=f"urn:oid:1.2.3|{mrn}").count()
    seen["patients"] = patients.count()

    scores = fhir.resources("Observation").search(patient=patient)  # `Patient/<id>`
    seen["count"] = scores.count()
    one_day = scores.search(date__ge=date(2025, 5, 1), date__lt=date(2025, 5, 2))
    seen["one_day"] = [valid(o)["effectiveDateTime"] for o in one_day.fetch_all()]
    seen["one_day_count"] = one_day.count()
    since = scores.search(date__ge=datetime(2025, 5, 1, 12, tzinfo=UTC))  # `…T12:00:00Z`
    seen["since_noon"] = since.count()
    # iterating follows the `next` links: pages of 2, in each order
    seen["newest_first"] = [o["effectiveDateTime"] for o in scores.sort("-date").limit(2)]
    seen["oldest_first"] = [o["effectiveDateTime"] for o in scores.sort("date").limit(2)]
    latest, last_changed = scores.sort("-date").first(), scores.sort("-_lastUpdated").first()
    assert latest is not None
    assert last_changed is not None
    seen["latest"] = latest["effectiveDateTime"]
    seen["last_changed"] = last_changed.id

    bundle = scores.include("Observation", "patient").limit(3).fetch_raw()
    seen["included"] = [
        (entry["search"]["mode"], entry["resource"]["resourceType"]) for entry in bundle["entry"]
    ]
    seen["include_matches"] = len(scores.include("Observation", "patient").limit(3).fetch())
    plans = fhir.resources("CarePlan").search(patient=patient).include("CarePlan", "patient")
    seen["plans"] = [valid(plan) for plan in plans.fetch()]
    # the same search as plain JSON, to validate the whole Bundle
    seen["plan_bundle"] = assert_valid(fhir.execute("CarePlan", "get", params=plans.params))
    return seen


async def test_an_ehr_searches_the_server_with_fhirpy(
    client: httpx.AsyncClient, issue_token: Issue, live_server: str
) -> None:
    patient = await create_patient(client, name="Ada Lovelace", external_id="MRN-EHR-2")
    await create_patient(client, name="Someone Else", external_id="MRN-EHR-3")
    await create_course(client, patient["id"])
    recorded = [
        "2025-04-30T23:00:00+00:00",
        "2025-05-01T08:00:00+00:00",
        "2025-05-01T12:00:00+00:00",
        "2025-05-01T20:00:00+00:00",
        "2025-05-02T09:00:00+00:00",
    ]
    created = [
        await create_observation(client, patient["id"], value=i, recorded_at=at)
        for i, at in enumerate(recorded)
    ]
    token = await issue_token("integration")

    seen = await asyncio.to_thread(ehr_searches, live_server, token, "MRN-EHR-2")

    assert seen["patient"]["id"] == patient["id"]
    assert seen["patient"]["identifier"][0]["value"] == "MRN-EHR-2"
    assert seen["by_mrn"] == [patient["id"]]
    assert seen["other_system"] == 0
    assert seen["patients"] == 2
    assert seen["count"] == 5
    assert seen["one_day"] == [
        "2025-05-01T08:00:00.000000Z",
        "2025-05-01T12:00:00.000000Z",
        "2025-05-01T20:00:00.000000Z",
    ]
    assert seen["one_day_count"] == 3
    assert seen["since_noon"] == 3
    instants = sorted(
        datetime.fromisoformat(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for at in recorded
    )
    assert seen["newest_first"] == instants[::-1]
    assert seen["oldest_first"] == instants
    assert seen["latest"] == instants[-1]
    assert seen["last_changed"] == created[-1]["id"]
    assert seen["included"] == [("match", "Observation")] * 3 + [("include", "Patient")]
    assert seen["include_matches"] == 3  # fhirpy keeps the searched type's resources
    assert len(seen["plans"]) == 1
    assert [e["search"]["mode"] for e in seen["plan_bundle"]["entry"]] == ["match", "include"]
