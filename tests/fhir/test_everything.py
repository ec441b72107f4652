"""`Patient/{id}/$everything`: the whole compartment, nothing else, paged, and `_since`."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from tests.factories import API, create_course, create_observation, create_patient, create_session
from tests.fhir.support import assert_outcome, entries, fhir_get, walk


async def _record(client: httpx.AsyncClient, **patient_fields: Any) -> dict[str, Any]:
    """A patient with two courses, three sessions and five observations (linked)."""
    patient = await create_patient(client, **patient_fields)
    lumbar = await create_course(client, patient["id"], adjustment="confirm")
    cervical = await create_course(client, patient["id"], region="cervical", adjustment="confirm")
    sessions = [
        await create_session(client, lumbar["id"]),
        await create_session(client, lumbar["id"]),
        await create_session(client, cervical["id"]),
    ]
    observations = [
        await create_observation(client, patient["id"], value=6, course_id=lumbar["id"]),
        await create_observation(
            client, patient["id"], value=4, course_id=lumbar["id"], session_id=sessions[0]["id"]
        ),
        await create_observation(client, patient["id"], instrument="ndi", value=30),
        await create_observation(
            client, patient["id"], instrument="rom-cervical-rotation", value=60, source="clinician"
        ),
        await create_observation(
            client, patient["id"], instrument="pain-vas", value=55, course_id=lumbar["id"]
        ),
    ]
    return {
        "Patient": [patient["id"]],
        "CarePlan": [lumbar["id"], cervical["id"]],
        "Procedure": [s["id"] for s in sessions],
        "Observation": [o["id"] for o in observations],
    }


def by_type(resources: list[dict[str, Any]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for resource in resources:
        grouped.setdefault(resource["resourceType"], []).append(resource["id"])
    return grouped


async def test_everything_is_complete_and_holds_nothing_else(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    mine = await _record(client, name="Mine")
    theirs = await _record(client, name="Theirs")
    bundle = await fhir_get(ehr, f"Patient/{mine['Patient'][0]}/$everything")
    resources = entries(bundle)
    assert bundle["total"] == len(resources) == 1 + 2 + 3 + 5
    grouped = by_type(resources)
    assert {k: sorted(v) for k, v in grouped.items()} == {k: sorted(v) for k, v in mine.items()}
    # the patient first, then courses, sessions, observations
    order = [r["resourceType"] for r in resources]
    assert order == ["Patient"] + ["CarePlan"] * 2 + ["Procedure"] * 3 + ["Observation"] * 5
    their_ids = {i for values in theirs.values() for i in values}
    assert not their_ids & {r["id"] for r in resources}
    # every reference inside the bundle resolves to an entry of the bundle
    present = {f"{r['resourceType']}/{r['id']}" for r in resources}
    for resource in resources:
        for element in ("subject", "basedOn", "partOf", "performer"):
            refs = resource.get(element, [])
            for ref in refs if isinstance(refs, list) else [refs]:
                assert ref["reference"] in present, (resource["resourceType"], element, ref)
    assert link_of(bundle, "self").endswith(f"/Patient/{mine['Patient'][0]}/$everything?_count=50")


def link_of(bundle: dict[str, Any], relation: str) -> str:
    return str(next(x["url"] for x in bundle["link"] if x["relation"] == relation))


async def test_everything_pages_across_resource_types(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    mine = await _record(client)
    patient_id = mine["Patient"][0]
    whole = entries(await fhir_get(ehr, f"Patient/{patient_id}/$everything"))
    for size in (1, 2, 3, 4, 11, 12):
        pages = await walk(ehr, f"Patient/{patient_id}/$everything", _count=size)
        assert all(len(entries(p)) <= size for p in pages)
        assert all(p["total"] == 11 for p in pages)
        paged = [r for p in pages for r in entries(p)]
        assert [r["id"] for r in paged] == [r["id"] for r in whole], size
        assert len(pages) == -(-11 // size), size  # no empty trailing page


async def test_everything_since_returns_only_what_changed(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    mine = await _record(client)
    patient_id = mine["Patient"][0]
    first = await fhir_get(ehr, f"Patient/{patient_id}/$everything")
    since = first["meta"]["lastUpdated"]  # when the first pull ran

    unchanged = await fhir_get(ehr, f"Patient/{patient_id}/$everything", _since=since)
    assert unchanged["total"] == 0

    lumbar = mine["CarePlan"][0]
    new_obs = await create_observation(client, patient_id, value=2, course_id=lumbar)
    response = await client.patch(f"{API}/patients/{patient_id}", json={"name": "Renamed"})
    assert response.status_code == 200
    changed = entries(await fhir_get(ehr, f"Patient/{patient_id}/$everything", _since=since))
    assert by_type(changed) == {"Patient": [patient_id], "Observation": [new_obs["id"]]}
    assert changed[0]["name"] == [{"text": "Renamed"}]


async def test_everything_for_an_unknown_patient_and_bad_parameters(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    url = f"/fhir/R4/Patient/{patient['id']}/$everything"
    assert_outcome(await ehr.get(url, params={"_since": "2026-01-01"}), 400, "invalid")
    assert_outcome(await ehr.get(url, params={"_type": "Observation"}), 400, "invalid")
    assert_outcome(await ehr.get(url, params={"_count": "x"}), 400, "invalid")
    bundle = await fhir_get(ehr, f"Patient/{patient['id']}/$everything")
    assert Counter(r["resourceType"] for r in entries(bundle)) == {"Patient": 1}
