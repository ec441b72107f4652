"""Round trips: what the business API stores, read back as FHIR, field by field."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.fhir import terminology as t
from app.observations.catalogue import BY_CODE, CATALOGUE
from tests.factories import (
    API,
    ago,
    create_course,
    create_observation,
    create_patient,
    create_session,
)
from tests.fhir.support import assert_valid, entries, fhir_get


def same_instant(fhir_value: str, api_value: str) -> bool:
    """A FHIR instant and an API timestamp name the same moment (to the microsecond)."""
    fhir_moment = datetime.fromisoformat(fhir_value.replace("Z", "+00:00"))
    return fhir_moment == datetime.fromisoformat(api_value)


async def only(ehr: httpx.AsyncClient, resource_type: str, patient_id: str) -> dict[str, Any]:
    bundle = await fhir_get(ehr, resource_type, patient=patient_id)
    assert bundle["total"] == 1
    [resource] = entries(bundle, resource_type)
    return resource


async def test_patient_round_trip(client: httpx.AsyncClient, ehr: httpx.AsyncClient) -> None:
    api = await create_patient(
        client,
        external_id="MRN-0042",
        name="Ada Lovelace",
        birth_date="1961-12-10",
        sex="female",
        condition="L5-S1 discectomy",
    )
    fhir = await fhir_get(ehr, f"Patient/{api['id']}")
    assert fhir["resourceType"] == "Patient"
    assert fhir["id"] == api["id"]
    assert same_instant(fhir["meta"]["lastUpdated"], api["updated_at"])
    assert fhir["identifier"] == [
        {
            "use": "usual",
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                        "code": "MR",
                        "display": "Medical record number",
                    }
                ]
            },
            "system": t.PATIENT_IDENTIFIER_SYSTEM,
            "value": "MRN-0042",
        }
    ]
    assert fhir["name"] == [{"text": "Ada Lovelace"}]
    assert fhir["birthDate"] == "1961-12-10"
    assert fhir["gender"] == "female"
    assert set(fhir) == {"resourceType", "id", "meta", "identifier", "name", "birthDate", "gender"}


async def test_patient_changes_show_with_a_new_last_updated(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    api = await create_patient(client, name="Before")
    before = await fhir_get(ehr, f"Patient/{api['id']}")
    response = await client.patch(f"{API}/patients/{api['id']}", json={"name": "After"})
    assert response.status_code == 200
    after = await fhir_get(ehr, f"Patient/{api['id']}")
    assert after["name"] == [{"text": "After"}]
    assert after["meta"]["lastUpdated"] > before["meta"]["lastUpdated"]
    assert same_instant(after["meta"]["lastUpdated"], response.json()["updated_at"])


async def test_patient_with_only_an_id(client: httpx.AsyncClient, ehr: httpx.AsyncClient) -> None:
    api = await create_patient(client)
    fhir = await fhir_get(ehr, f"Patient/{api['id']}")
    assert set(fhir) == {"resourceType", "id", "meta"}


@pytest.mark.parametrize("instrument", CATALOGUE, ids=lambda ins: ins.code)
async def test_observation_round_trip_for_every_instrument(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient, instrument: Any
) -> None:
    patient = await create_patient(client)
    value = instrument.min + (instrument.max - instrument.min) * 0.4
    if instrument.integer:
        value = round(value)
    api = await create_observation(
        client, patient["id"], instrument=instrument.code, value=value, recorded_at=ago(hours=3)
    )
    fhir = await only(ehr, "Observation", patient["id"])
    assert fhir["id"] == api["id"]
    assert fhir["status"] == "final"
    assert fhir["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert same_instant(fhir["effectiveDateTime"], api["recorded_at"])
    assert same_instant(fhir["issued"], api["received_at"])
    assert same_instant(fhir["meta"]["lastUpdated"], api["received_at"])
    assert fhir["valueQuantity"] == {
        "value": pytest.approx(api["value"]),
        "unit": t.UCUM_DISPLAY[instrument.unit],
        "system": "http://unitsofmeasure.org",
        "code": instrument.unit,
    }
    codings = {c["system"]: c for c in fhir["code"]["coding"]}
    assert codings[t.INSTRUMENT_SYSTEM]["code"] == api["instrument"]
    if instrument.loinc:
        assert codings[t.LOINC]["code"] == instrument.loinc
    else:
        assert t.LOINC not in codings
    category = fhir["category"][0]["coding"][0]["code"]
    assert category == ("exam" if instrument.kind == "mobility" else "survey")
    for absent in ("basedOn", "partOf", "extension", "note", "performer"):
        assert absent not in fhir


async def test_observation_with_every_field(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    course = await create_course(client, patient["id"])
    session = await create_session(client, course["id"])
    api = await create_observation(
        client,
        patient["id"],
        instrument="pain-nrs",
        value=7,
        course_id=course["id"],
        session_id=session["id"],
        context="movement",
        source="patient",
        note="after climbing stairs",
    )
    fhir = await only(ehr, "Observation", patient["id"])
    assert fhir["id"] == api["id"]
    assert fhir["basedOn"] == [{"reference": f"CarePlan/{course['id']}"}]
    assert fhir["partOf"] == [{"reference": f"Procedure/{session['id']}"}]
    assert fhir["extension"] == [{"url": t.EXT_OBSERVATION_CONTEXT, "valueCode": "movement"}]
    assert fhir["performer"] == [{"reference": f"Patient/{patient['id']}"}]
    assert fhir["note"] == [{"text": "after climbing stairs"}]
    assert fhir["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "72514-3",
        "display": "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
    }
    assert fhir["valueQuantity"]["value"] == 7
    assert fhir["category"][0]["coding"][0]["code"] == "survey"


@pytest.mark.parametrize(
    ("source", "category"), [("clinician", "exam"), ("device", "exam"), ("patient", "survey")]
)
async def test_mobility_category_follows_who_measured(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient, source: str, category: str
) -> None:
    patient = await create_patient(client)
    await create_observation(
        client, patient["id"], instrument="rom-lumbar-flexion", value=45, source=source
    )
    fhir = await only(ehr, "Observation", patient["id"])
    assert fhir["category"][0]["coding"][0]["code"] == category
    assert fhir["valueQuantity"]["code"] == "deg"


async def test_procedure_round_trip(client: httpx.AsyncClient, ehr: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    course = await create_course(client, patient["id"], technique="intramuscular")
    api = await create_session(
        client,
        course["id"],
        performed_at=ago(hours=5),
        sites=["L4-L5 paravertebral left", "L4-L5 paravertebral right"],
        ozone_concentration_ug_ml=15.5,
        volume_ml=10,
        injection_points=6,
        pain_before=7,
        pain_after=3,
        adverse_events=["transient lightheadedness"],
        notes="well tolerated",
    )
    fhir = await only(ehr, "Procedure", patient["id"])
    assert fhir["id"] == api["id"]
    assert fhir["status"] == "completed"
    assert fhir["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert fhir["basedOn"] == [{"reference": f"CarePlan/{course['id']}"}]
    assert same_instant(fhir["performedDateTime"], api["performed_at"])
    assert same_instant(fhir["meta"]["lastUpdated"], api["created_at"])
    assert fhir["code"] == {
        "coding": [
            {
                "system": t.PROCEDURE_SYSTEM,
                "code": "ozone-intramuscular",
                "display": "Oxygen-ozone infiltration, intramuscular",
            }
        ]
    }
    assert fhir["bodySite"] == [{"text": site} for site in api["sites"]]
    assert fhir["complication"] == [{"text": "transient lightheadedness"}]
    assert fhir["note"] == [{"text": "well tolerated"}]
    extensions = {e["url"]: e for e in fhir["extension"]}
    assert extensions[t.EXT_SESSION_NUMBER] == {"url": t.EXT_SESSION_NUMBER, "valueInteger": 1}
    assert extensions[t.EXT_OZONE_CONCENTRATION]["valueQuantity"] == {
        "value": 15.5,
        "unit": "µg/mL",
        "system": "http://unitsofmeasure.org",
        "code": "ug/mL",
    }
    assert extensions[t.EXT_OZONE_VOLUME]["valueQuantity"] == {
        "value": 10,
        "unit": "mL",
        "system": "http://unitsofmeasure.org",
        "code": "mL",
    }
    assert extensions[t.EXT_INJECTION_POINTS]["valueInteger"] == 6
    assert extensions[t.EXT_PAIN_BEFORE]["valueQuantity"]["value"] == 7
    assert extensions[t.EXT_PAIN_AFTER]["valueQuantity"]["value"] == 3
    assert extensions[t.EXT_PAIN_AFTER]["valueQuantity"]["code"] == "{score}"


async def test_a_bare_session_is_a_bare_procedure(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    course = await create_course(client, patient["id"])
    await create_session(client, course["id"])
    fhir = await only(ehr, "Procedure", patient["id"])
    assert fhir["code"]["coding"][0]["code"] == "ozone-paravertebral"  # the course's technique
    assert fhir["extension"] == [{"url": t.EXT_SESSION_NUMBER, "valueInteger": 1}]
    for absent in ("bodySite", "complication", "note"):
        assert absent not in fhir


async def _care_plan(ehr: httpx.AsyncClient, client: httpx.AsyncClient, course_id: str) -> Any:
    api = (await client.get(f"{API}/courses/{course_id}")).json()
    bundle = await fhir_get(ehr, "CarePlan", patient=api["patient_id"])
    [fhir] = [r for r in entries(bundle) if r["id"] == course_id]
    return api, fhir


async def test_care_plan_round_trip(client: httpx.AsyncClient, ehr: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    start = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    course = await create_course(
        client,
        patient["id"],
        indication="post-discectomy pain",
        region="lumbar",
        technique="paravertebral",
        start_date=start,
        max_sessions=10,
        adjustment="confirm",
        notes="start low",
    )
    api, fhir = await _care_plan(ehr, client, course["id"])
    assert fhir["id"] == api["id"]
    assert fhir["status"] == "active"
    assert fhir["intent"] == "plan"
    assert fhir["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert fhir["period"] == {"start": start}
    assert same_instant(fhir["created"], api["created_at"])
    assert same_instant(fhir["meta"]["lastUpdated"], api["updated_at"])
    assert fhir["title"] == "Oxygen-ozone infiltrations: post-discectomy pain"
    assert "lumbar" in fhir["description"]
    assert fhir["note"] == [{"text": "start low"}]
    detail = fhir["activity"][0]["detail"]
    assert detail["kind"] == "ServiceRequest"
    assert detail["status"] == "scheduled"  # no session yet
    assert detail["code"]["coding"][0]["code"] == "ozone-paravertebral"
    assert detail["scheduledTiming"]["repeat"] == {
        "frequency": 3,
        "period": 1,
        "periodUnit": "wk",
        "count": 10,
    }
    extensions = {e["url"]: e for e in fhir["extension"]}
    assert extensions[t.EXT_COURSE_PHASE]["valueCoding"] == {
        "system": t.PHASE_SYSTEM,
        "code": api["phase"],
    }
    assert extensions[t.EXT_SESSIONS_DONE]["valueInteger"] == api["sessions_done"] == 0
    assert extensions[t.EXT_FREQUENCY_ADJUSTMENT]["valueCode"] == "confirm"


async def test_care_plan_follows_frequency_and_status_changes(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    course = await create_course(client, adjustment="confirm")
    await create_session(client, course["id"])
    _, fhir = await _care_plan(ehr, client, course["id"])
    assert fhir["activity"][0]["detail"]["status"] == "in-progress"

    changed = await client.post(
        f"{API}/courses/{course['id']}/frequency",
        json={"sessions_per_week": 2, "reason": "good response"},
    )
    assert changed.status_code == 200, changed.text
    api, fhir = await _care_plan(ehr, client, course["id"])
    repeat = fhir["activity"][0]["detail"]["scheduledTiming"]["repeat"]
    assert repeat == {"frequency": 2, "period": 1, "periodUnit": "wk"}
    assert same_instant(fhir["meta"]["lastUpdated"], api["updated_at"])
    phase = next(e for e in fhir["extension"] if e["url"] == t.EXT_COURSE_PHASE)
    assert phase["valueCoding"]["code"] == "consolidation"

    every_other_week = await client.post(
        f"{API}/courses/{course['id']}/frequency",
        json={"sessions_per_week": 0.5, "reason": "maintenance, every other week"},
    )
    assert every_other_week.status_code == 422  # a whole number of sessions a week
    await client.post(
        f"{API}/courses/{course['id']}/frequency",
        json={"sessions_per_week": 1, "reason": "maintenance"},
    )
    _, fhir = await _care_plan(ehr, client, course["id"])
    repeat = fhir["activity"][0]["detail"]["scheduledTiming"]["repeat"]
    assert repeat == {"frequency": 1, "period": 1, "periodUnit": "wk"}

    for status, plan, activity in [
        ("paused", "on-hold", "on-hold"),
        ("active", "active", "in-progress"),
        ("discontinued", "revoked", "stopped"),
    ]:
        response = await client.patch(f"{API}/courses/{course['id']}", json={"status": status})
        assert response.status_code == 200, response.text
        _, fhir = await _care_plan(ehr, client, course["id"])
        assert fhir["status"] == plan
        assert fhir["activity"][0]["detail"]["status"] == activity


async def test_completed_course(client: httpx.AsyncClient, ehr: httpx.AsyncClient) -> None:
    course = await create_course(client)
    await client.patch(f"{API}/courses/{course['id']}", json={"status": "completed"})
    _, fhir = await _care_plan(ehr, client, course["id"])
    assert fhir["status"] == "completed"
    assert fhir["activity"][0]["detail"]["status"] == "completed"


async def test_capability_statement_lists_exactly_what_is_served(
    app: FastAPI, ehr: httpx.AsyncClient
) -> None:
    statement = await fhir_get(ehr, "metadata")
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["format"] == ["json"]
    assert statement["kind"] == "instance"
    assert statement["implementation"]["url"] == "http://test/fhir/R4"
    [rest] = statement["rest"]
    advertised = set()
    for resource in rest["resource"]:
        for interaction in resource["interaction"]:
            code = interaction["code"]
            advertised.add(
                f"/fhir/R4/{resource['type']}/{{id}}"
                if code in ("read", "delete")
                else f"/fhir/R4/{resource['type']}"
            )
        for operation in resource.get("operation", []):
            if operation["name"] == "export":  # a type-level operation
                advertised.add(f"/fhir/R4/{resource['type']}/$export")
            else:
                advertised.add(f"/fhir/R4/{resource['type']}/{{id}}/${operation['name']}")
    advertised |= {f"/fhir/R4/${operation['name']}" for operation in rest.get("operation", [])}
    # R4 has no SubscriptionTopic type: the topics are advertised by their canonical URLs (the
    # Backport IG's extension on Subscription), and their list is GET SubscriptionTopic.
    if any(r["type"] == "Subscription" and r.get("extension") for r in rest["resource"]):
        advertised.add("/fhir/R4/SubscriptionTopic")
    # Bulk Data status and file URLs are handed out by the kick-off and the manifest; the
    # SMART configuration is discovery, like the statement itself.
    discovery = ("/fhir/R4/metadata", "/fhir/R4/.well-known/")
    served = {
        re.sub(r"\{[^}]+\}", "{id}", p)
        for p in app.openapi()["paths"]
        if p.startswith("/fhir/") and not p.startswith(("/fhir/R4/$export-", *discovery))
    }
    assert advertised == served
    params = {
        r["type"]: sorted(p["name"] for p in r.get("searchParam", [])) for r in rest["resource"]
    }
    results = ["_count", "_lastUpdated", "_sort", "_summary", "_total"]
    assert params == {
        "Patient": sorted([*results, "identifier"]),
        "Observation": sorted([*results, "code", "date", "patient"]),
        "Procedure": sorted([*results, "patient"]),
        "CarePlan": sorted([*results, "patient"]),
        "Subscription": [],
    }
    # each search takes what the statement lists, and the statement lists what each takes
    # (this server's paging and format aside; `_include` is `searchInclude`)
    document = app.openapi()["paths"]
    for resource in rest["resource"]:
        if not any(i["code"] == "search-type" for i in resource["interaction"]):
            continue
        operation = document[f"/fhir/R4/{resource['type']}"]["get"]
        taken = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
        unlisted = {"_cursor", "_format", "_totalMethod", "_include"}
        assert taken - unlisted == set(params[resource["type"]]), resource["type"]
        includes = {p["name"]: p["schema"] for p in operation["parameters"]}.get("_include")
        if includes is None:
            assert "searchInclude" not in resource
        else:
            assert resource["searchInclude"] == [f"{resource['type']}:patient"]
            assert f"{resource['type']}:patient" in includes["items"]["enum"]
        sorts = next(p for p in resource["searchParam"] if p["name"] == "_sort")
        for order in {p["name"]: p["schema"] for p in operation["parameters"]}["_sort"]["enum"]:
            assert f"`{order}`" in sorts["documentation"]
    observation = next(r for r in rest["resource"] if r["type"] == "Observation")
    date = next(p for p in observation["searchParam"] if p["name"] == "date")
    assert date["definition"] == "http://hl7.org/fhir/SearchParameter/clinical-date"
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert [i["code"] for i in patient["interaction"]] == ["read", "search-type"]
    identifier = next(p for p in patient["searchParam"] if p["name"] == "identifier")
    assert identifier["type"] == "token"
    assert identifier["definition"] == "http://hl7.org/fhir/SearchParameter/Patient-identifier"


async def test_capability_statement_advertises_topic_based_subscriptions(
    ehr: httpx.AsyncClient,
) -> None:
    """As the Subscriptions R5 Backport IG's R4 server statement does: Subscription with the
    backport profile, read, create and delete, the `$status` operation, and the topic's
    canonical URL, which a Subscription's `criteria` takes."""
    statement = assert_valid(await fhir_get(ehr, "metadata"))
    [subscription] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription"]
    backport = "http://hl7.org/fhir/uv/subscriptions-backport"
    assert subscription["supportedProfile"] == [
        f"{backport}/StructureDefinition/backport-subscription"
    ]
    assert sorted(i["code"] for i in subscription["interaction"]) == ["create", "delete", "read"]
    [status] = subscription["operation"]
    assert status["name"] == "status"
    assert status["definition"] == f"{backport}/OperationDefinition/backport-subscription-status"
    [topic] = subscription["extension"]
    assert topic["url"] == (
        f"{backport}/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"
    )
    listed = await fhir_get(ehr, "SubscriptionTopic")
    [entry] = listed["entry"]
    urls = {e["url"]: e.get("valueUri") for e in entry["resource"]["extension"]}
    assert topic["valueCanonical"] in urls.values()
    assert "GET SubscriptionTopic" in subscription["documentation"]


async def test_instrument_catalogue_and_fhir_agree_on_loinc(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    """The business API's `loinc` for each instrument is what FHIR codes it with."""
    catalogue = (await client.get(f"{API}/instruments")).json()
    items = catalogue["items"] if isinstance(catalogue, dict) else catalogue
    for item in items:
        assert item["loinc"] == BY_CODE[item["code"]].loinc
    assert {i["code"] for i in items if i["loinc"]} == {"pain-nrs", "odi"}
