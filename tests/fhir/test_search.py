"""Searches: paging, totals, filters, incremental `_lastUpdated` pulls, OperationOutcome errors."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.fhir import terminology as t
from tests.factories import (
    API,
    ago,
    create_course,
    create_observation,
    create_patient,
    create_session,
)
from tests.fhir.support import assert_outcome, entries, fhir_body, fhir_get, walk
from tests.support import MakeClient


def ids(resources: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in resources]


def all_entries(bundles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [resource for bundle in bundles for resource in entries(bundle)]


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((x["url"] for x in bundle["link"] if x["relation"] == relation), None)


async def batch(client: httpx.AsyncClient, patient_id: str, n: int, **fields: Any) -> list[str]:
    items = [
        {"instrument": "pain-nrs", "value": i % 11, "recorded_at": ago(minutes=n - i)} | fields
        for i in range(n)
    ]
    response = await client.post(
        f"{API}/patients/{patient_id}/observations/batch", json={"observations": items}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert all(r["status"] == "created" for r in results), results
    return [r["id"] for r in results]


async def test_paging_through_a_searchset_larger_than_one_page(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    created = [
        (await create_observation(client, patient["id"], value=i, recorded_at=ago(hours=10 - i)))[
            "id"
        ]
        for i in range(7)
    ]
    bundles = await walk(ehr, "Observation", patient=f"Patient/{patient['id']}", _count=3)
    assert [len(entries(b)) for b in bundles] == [3, 3, 1]
    assert all(b["total"] == 7 for b in bundles)
    seen = ids(all_entries(bundles))
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == set(created)
    stamps = [r["meta"]["lastUpdated"] for r in all_entries(bundles)]
    assert stamps == sorted(stamps)  # oldest change first: new records join the end
    first_next = link(bundles[0], "next")
    assert first_next is not None
    params = query_of(first_next)
    assert params["_count"] == ["3"]
    assert params["patient"] == [f"Patient/{patient['id']}"]
    assert "_cursor" in params
    assert query_of(link(bundles[1], "self") or "")["_cursor"] == params["_cursor"]
    assert link(bundles[-1], "next") is None


async def test_default_page_size_is_50(client: httpx.AsyncClient, ehr: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    created = await batch(client, patient["id"], 120)
    bundles = await walk(ehr, "Observation", patient=patient["id"])
    assert [len(entries(b)) for b in bundles] == [50, 50, 20]
    assert query_of(link(bundles[0], "self") or "")["_count"] == ["50"]
    assert sorted(ids(all_entries(bundles))) == sorted(created)


async def test_count_zero_gives_the_total_alone_and_big_counts_are_capped(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    await batch(client, patient["id"], 4)
    bundle = await fhir_get(ehr, "Observation", patient=patient["id"], _count=0)
    assert bundle["total"] == 4
    assert "entry" not in bundle
    assert link(bundle, "next") is None
    bundle = await fhir_get(ehr, "Observation", patient=patient["id"], _count=100000)
    assert len(entries(bundle)) == 4
    assert query_of(link(bundle, "self") or "")["_count"] == ["500"]


async def test_searches_without_a_patient_cover_every_patient(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    first, second = await create_patient(client), await create_patient(client)
    one = await create_observation(client, first["id"])
    two = await create_observation(client, second["id"])
    bundle = await fhir_get(ehr, "Observation")
    assert set(ids(entries(bundle))) == {one["id"], two["id"]}
    only_first = await fhir_get(ehr, "Observation", patient=first["id"])
    assert ids(entries(only_first)) == [one["id"]]


async def test_unknown_patients_match_nothing(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    await create_observation(client, patient["id"])
    for value in (str(uuid.uuid4()), "Patient/not-one-of-ours", "12345"):
        for resource_type in ("Observation", "Procedure", "CarePlan"):
            bundle = await fhir_get(ehr, resource_type, patient=value)
            assert bundle["total"] == 0
            assert "entry" not in bundle


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("http://loinc.org|72514-3", {"pain-nrs"}),
        ("72514-3", {"pain-nrs"}),
        (f"{t.INSTRUMENT_SYSTEM}|pain-vas", {"pain-vas"}),
        ("schober", {"schober"}),
        ("pain-vas,http://loinc.org|97909-6", {"pain-vas", "odi"}),
        ("http://loinc.org|", {"pain-nrs", "odi"}),
        ("http://loinc.org|8480-6", set()),
    ],
)
async def test_code_filters(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient, code: str, expected: set[str]
) -> None:
    patient = await create_patient(client)
    for instrument, value in [("pain-nrs", 5), ("pain-vas", 40), ("odi", 30), ("schober", 4)]:
        await create_observation(client, patient["id"], instrument=instrument, value=value)
    bundle = await fhir_get(ehr, "Observation", patient=patient["id"], code=code)
    found = {
        c["code"]
        for r in entries(bundle)
        for c in r["code"]["coding"]
        if c["system"] == t.INSTRUMENT_SYSTEM
    }
    assert found == expected
    assert bundle["total"] == len(expected)


async def test_procedure_and_care_plan_searches(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    patient, other = await create_patient(client), await create_patient(client)
    course = await create_course(client, patient["id"])
    second = await create_course(client, patient["id"], region="cervical")
    sessions = [await create_session(client, course["id"]) for _ in range(3)]
    await create_session(client, (await create_course(client, other["id"]))["id"])
    procedures = await walk(ehr, "Procedure", patient=patient["id"], _count=2)
    assert sorted(ids(all_entries(procedures))) == sorted(s["id"] for s in sessions)
    plans = await fhir_get(ehr, "CarePlan", patient=f"Patient/{patient['id']}")
    assert sorted(ids(entries(plans))) == sorted([course["id"], second["id"]])
    assert plans["total"] == 2


def newest(resources: list[dict[str, Any]]) -> str:
    return str(max(r["meta"]["lastUpdated"] for r in resources))


async def _everything_of(ehr: httpx.AsyncClient, resource_type: str, **params: Any) -> list[Any]:
    return all_entries(await walk(ehr, resource_type, _count=500, **params))


async def test_incremental_pulls_return_exactly_the_changed_records(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    """An EHR pulls everything, remembers the newest `meta.lastUpdated` it saw, and asks for
    `_lastUpdated=gt<that>` next time: it gets what changed since, nothing else."""
    first, second = await create_patient(client), await create_patient(client)
    course_one = await create_course(client, first["id"], adjustment="confirm")
    course_two = await create_course(client, second["id"], adjustment="confirm")
    await create_session(client, course_one["id"])
    old_obs = [(await create_observation(client, p["id"]))["id"] for p in (first, second, first)]

    pulled = {rt: await _everything_of(ehr, rt) for rt in ("Observation", "Procedure", "CarePlan")}
    assert sorted(ids(pulled["Observation"])) == sorted(old_obs)
    watermark = max(newest(resources) for resources in pulled.values())

    new_obs = [
        (await create_observation(client, first["id"], instrument="pain-vas", value=30))["id"],
        (await create_observation(client, second["id"]))["id"],
    ]
    new_session = await create_session(client, course_two["id"])  # changes course_two too
    notes = await client.patch(f"{API}/courses/{course_one['id']}", json={"notes": "changed"})
    assert notes.status_code == 200

    changed_obs = await _everything_of(ehr, "Observation", _lastUpdated=f"gt{watermark}")
    assert sorted(ids(changed_obs)) == sorted(new_obs)
    changed_sessions = await _everything_of(ehr, "Procedure", _lastUpdated=f"gt{watermark}")
    assert ids(changed_sessions) == [new_session["id"]]
    changed_plans = await _everything_of(ehr, "CarePlan", _lastUpdated=f"gt{watermark}")
    # exactly the courses whose business record changed after the watermark
    courses = [
        (await client.get(f"{API}/courses/{c['id']}")).json() for c in (course_one, course_two)
    ]
    mark = datetime.fromisoformat(watermark.replace("Z", "+00:00"))
    expected = [c["id"] for c in courses if datetime.fromisoformat(c["updated_at"]) > mark]
    assert (
        sorted(ids(changed_plans))
        == sorted(expected)
        == sorted([course_one["id"], course_two["id"]])
    )

    # the same pull narrowed to a patient, and the complement: nothing new at or before the mark
    mine = await _everything_of(
        ehr, "Observation", patient=first["id"], _lastUpdated=f"gt{watermark}"
    )
    assert ids(mine) == [new_obs[0]]
    before = await _everything_of(ehr, "Observation", _lastUpdated=f"le{watermark}")
    assert sorted(ids(before)) == sorted(old_obs)
    # ge/lt together: a window holding only the first new observation
    first_new = next(r for r in changed_obs if r["id"] == new_obs[0])["meta"]["lastUpdated"]
    window = await _everything_of(
        ehr,
        "Observation",
        _lastUpdated=[f"ge{first_new}", f"lt{newest(changed_obs)}"],
    )
    assert ids(window) == [new_obs[0]]
    # a following pull from the new watermark finds nothing
    later = newest(changed_obs + changed_sessions + changed_plans)
    for resource_type in ("Observation", "Procedure", "CarePlan"):
        assert await _everything_of(ehr, resource_type, _lastUpdated=f"gt{later}") == []


async def test_last_updated_by_day_and_offset(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    obs = await create_observation(client, patient["id"])
    received = datetime.fromisoformat(obs["received_at"])
    today, tomorrow = received.date(), received.date() + timedelta(days=1)
    hits = await fhir_get(ehr, "Observation", patient=patient["id"], _lastUpdated=today.isoformat())
    assert ids(entries(hits)) == [obs["id"]]
    misses = await fhir_get(ehr, "Observation", patient=patient["id"], _lastUpdated=f"ge{tomorrow}")
    assert misses["total"] == 0
    # the same instant written with an offset (and "+" percent-encoded by httpx)
    shifted = (received - timedelta(seconds=1)).astimezone(timezone(timedelta(hours=5, minutes=30)))
    after = await fhir_get(
        ehr, "Observation", patient=patient["id"], _lastUpdated=f"gt{shifted.isoformat()}"
    )
    assert ids(entries(after)) == [obs["id"]]


# --- errors --------------------------------------------------------------------------------


async def test_unknown_ids_are_404_outcomes(ehr: httpx.AsyncClient) -> None:
    for path in (
        f"Patient/{uuid.uuid4()}",
        "Patient/not-a-uuid",
        f"Patient/{uuid.uuid4()}/$everything",
    ):
        body = assert_outcome(await ehr.get(f"/fhir/R4/{path}"), 404, "not-found")
        assert "not known" in body["issue"][0]["diagnostics"]


async def test_unknown_resource_types_are_404_outcomes(ehr: httpx.AsyncClient) -> None:
    assert_outcome(await ehr.get("/fhir/R4/Encounter"), 404, "not-found")
    assert_outcome(await ehr.get("/fhir/R4/Observation/123"), 404, "not-found")


async def test_writes_are_not_supported(ehr: httpx.AsyncClient) -> None:
    response = await ehr.post("/fhir/R4/Observation", json={"resourceType": "Observation"})
    assert_outcome(response, 405, "not-supported")
    assert response.headers["allow"] == "GET"


@pytest.mark.parametrize(
    ("params", "mentions"),
    [
        ({"_count": "ten"}, "_count"),
        ({"_count": "-5"}, "_count"),
        ({"_lastUpdated": "2026-01-01T10:00:00"}, "_lastUpdated"),
        ({"_lastUpdated": "ne2026-01-01"}, "_lastUpdated"),
        ({"_lastUpdated": "last week"}, "_lastUpdated"),
        ({"_cursor": "not-a-cursor"}, "_cursor"),
        ({"code:text": "pain"}, "code:text"),
        ({"patient": "Practitioner/1"}, "patient"),
        ({"patient": ""}, "patient"),
        ({"date": "sa2026-01-01"}, "date"),
        ({"date": "2026-01-01T10:00"}, "date"),
        ({"_sort": "value"}, "_sort"),
        ({"_sort": "-date,_lastUpdated"}, "_sort"),  # one order
        ({"_summary": "true"}, "_summary"),
        ({"_total": "estimate"}, "_total"),
        ({"_include": "Procedure:patient"}, "_include"),
        ({"_include": "Observation:subject"}, "_include"),
        ({"_include:iterate": "Observation:patient"}, "_include:iterate"),
        ({"_elements": "id"}, "_elements"),
    ],
)
async def test_bad_parameters_are_400_outcomes(
    ehr: httpx.AsyncClient, params: dict[str, str], mentions: str
) -> None:
    body = assert_outcome(await ehr.get("/fhir/R4/Observation", params=params), 400, "invalid")
    assert mentions in body["issue"][0]["diagnostics"]


async def test_a_cursor_from_another_search_is_refused(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    await batch(client, patient["id"], 3)
    page = await fhir_get(ehr, "Observation", patient=patient["id"], _count=1)
    cursor = query_of(link(page, "next") or "")["_cursor"][0]
    response = await ehr.get("/fhir/R4/Procedure", params={"_cursor": cursor})
    assert_outcome(response, 400, "invalid")


async def test_lenient_handling_ignores_unknown_parameters(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    await create_observation(client, patient["id"])
    response = await ehr.get(
        "/fhir/R4/Observation",
        params={"patient": patient["id"], "_elements": "id", "_revinclude": "Provenance:target"},
        headers={"Prefer": "handling=lenient"},
    )
    bundle = fhir_body(response)
    assert bundle["total"] == 1
    assert set(query_of(link(bundle, "self") or "")) == {"patient", "_count"}  # what was used
    # invalid values of supported parameters are still errors
    response = await ehr.get(
        "/fhir/R4/Observation", params={"_count": "x"}, headers={"Prefer": "handling=lenient"}
    )
    assert_outcome(response, 400, "invalid")


async def test_other_formats_are_not_acceptable(ehr: httpx.AsyncClient) -> None:
    assert_outcome(
        await ehr.get("/fhir/R4/metadata", params={"_format": "xml"}), 406, "not-supported"
    )
    assert (await fhir_get(ehr, "metadata", _format="json"))[
        "resourceType"
    ] == "CapabilityStatement"


async def test_no_token_is_a_401_outcome(
    anonymous: httpx.AsyncClient, make_client: MakeClient
) -> None:
    for path in ("Observation", f"Patient/{uuid.uuid4()}"):
        response = await anonymous.get(f"/fhir/R4/{path}")
        assert_outcome(response, 401, "login")
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert_outcome(await make_client("not-a-token").get("/fhir/R4/Procedure"), 401, "login")
    # the CapabilityStatement is open (tests/oauth/test_discovery.py): no token, or any
    assert (await anonymous.get("/fhir/R4/metadata")).status_code == 200


async def test_responses_are_fhir_json_and_not_cached(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    for path in ("metadata", f"Patient/{patient['id']}", "Observation", "Procedure", "CarePlan"):
        response = await ehr.get(f"/fhir/R4/{path}")
        fhir_body(response)
        assert response.headers["cache-control"] == "no-store"
    response = await ehr.get("/fhir/R4/Encounter")
    assert response.headers["cache-control"] == "no-store"
