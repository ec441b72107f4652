"""What a search returns, beyond which resources match: `_sort`, `_summary=count`, `_total` and
`_include=<type>:patient`.

- `_sort`: `_lastUpdated` (the default), `-_lastUpdated`, and on Observation `date` / `-date`
  (the effective time); ties by id. Paging follows the order: a `next` link's cursor names it,
  and a cursor keeps its order even when `_sort` beside it says another.
- `_summary=count`: the total, no entries. `_total=none`: entries, no total;
  `_total=accurate` (the default) counts.
- `_include=<type>:patient`: after each page's matches, the Patients they refer to, once each,
  as `include` entries; the total counts matches only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.factories import (
    create_course,
    create_observation,
    create_patient,
    create_session,
)
from tests.fhir.support import RoleClient, assert_outcome, entries, fhir_body, fhir_get, walk

# Recorded out of the order they are received in, two at the same moment (ties go by id).
RECORDED = [
    "2025-03-01T10:00:00+00:00",
    "2025-01-01T10:00:00+00:00",
    "2025-02-01T10:00:00+00:00",
    "2025-02-01T10:00:00+00:00",
    "2025-04-01T10:00:00+00:00",
]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((x["url"] for x in bundle["link"] if x["relation"] == relation), None)


def query_of(url: str | None) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url or "").query)


@pytest.fixture
async def observations(client: httpx.AsyncClient) -> tuple[str, list[dict[str, Any]]]:
    """A patient and its observations (as the business API returned them), received in the
    order of RECORDED."""
    patient = await create_patient(client)
    created = [
        await create_observation(client, patient["id"], value=i, recorded_at=recorded_at)
        for i, recorded_at in enumerate(RECORDED)
    ]
    return patient["id"], created


def expected_order(created: list[dict[str, Any]], sort: str) -> list[str]:
    field = "recorded_at" if sort.lstrip("-") == "date" else "received_at"
    key = [(o[field], o["id"]) for o in created]
    by_key = sorted(zip(key, created, strict=True), key=lambda pair: pair[0])
    ordered = [o["id"] for _, o in by_key]
    return ordered[::-1] if sort.startswith("-") else ordered


def paged_ids(bundles: list[dict[str, Any]]) -> list[str]:
    return [resource["id"] for bundle in bundles for resource in entries(bundle)]


# --- _sort ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sort", ["date", "-date", "_lastUpdated", "-_lastUpdated"])
@pytest.mark.parametrize("count", [1, 2, 5, 50])
async def test_sorted_pages_go_through_every_match_once_in_order(
    ehr: httpx.AsyncClient,
    observations: tuple[str, list[dict[str, Any]]],
    sort: str,
    count: int,
) -> None:
    patient_id, created = observations
    bundles = await walk(ehr, "Observation", patient=patient_id, _sort=sort, _count=count)
    assert paged_ids(bundles) == expected_order(created, sort)
    assert all(bundle["total"] == len(created) for bundle in bundles)
    assert len(bundles) == -(-len(created) // count)
    for bundle in bundles:
        assert query_of(link(bundle, "self"))["_sort"] == [sort]
        next_url = link(bundle, "next")
        if next_url is not None:
            [cursor] = query_of(next_url)["_cursor"]
            named = cursor.partition(".")[0]  # the cursor names its order, unless the default
            assert named == ("Observation" if sort == "_lastUpdated" else f"Observation:{sort}")


async def test_without_sort_the_order_is_last_updated(
    ehr: httpx.AsyncClient, observations: tuple[str, list[dict[str, Any]]]
) -> None:
    patient_id, created = observations
    bundles = await walk(ehr, "Observation", patient=patient_id, _count=2)
    assert paged_ids(bundles) == expected_order(created, "_lastUpdated")
    assert "_sort" not in query_of(link(bundles[0], "next"))


async def test_a_cursor_keeps_its_order_whatever_sort_says(
    ehr: httpx.AsyncClient, observations: tuple[str, list[dict[str, Any]]]
) -> None:
    patient_id, created = observations
    first = await fhir_get(ehr, "Observation", patient=patient_id, _sort="-date", _count=2)
    [cursor] = query_of(link(first, "next"))["_cursor"]
    for sort in ("date", "_lastUpdated", None):
        params: dict[str, Any] = {"patient": patient_id, "_count": 2, "_cursor": cursor}
        if sort is not None:
            params["_sort"] = sort
        second = await fhir_get(ehr, "Observation", **params)
        assert [r["id"] for r in entries(second)] == expected_order(created, "-date")[2:4]
        assert query_of(link(second, "self"))["_sort"] == ["-date"]  # the order it is in


async def test_newest_first_while_records_arrive(
    client: httpx.AsyncClient,
    ehr: httpx.AsyncClient,
    observations: tuple[str, list[dict[str, Any]]],
) -> None:
    """Paging newest first is a walk back from where the first page ended: records arriving
    meanwhile are before it, so they do not shift the pages (a new search shows them)."""
    patient_id, created = observations
    first = await fhir_get(ehr, "Observation", patient=patient_id, _sort="-_lastUpdated", _count=2)
    newer = await create_observation(client, patient_id, recorded_at=RECORDED[0])
    seen = [r["id"] for r in entries(first)]
    next_url = link(first, "next")
    while next_url is not None:
        page = fhir_body(await ehr.get(next_url))
        seen += [r["id"] for r in entries(page)]
        next_url = link(page, "next")
    assert seen == expected_order(created, "-_lastUpdated")
    again = await fhir_get(ehr, "Observation", patient=patient_id, _sort="-_lastUpdated")
    assert entries(again)[0]["id"] == newer["id"]


@pytest.mark.parametrize("resource_type", ["Procedure", "CarePlan", "Patient"])
async def test_other_searches_sort_by_last_updated_either_way(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient, resource_type: str
) -> None:
    patient = await create_patient(client)
    courses = [await create_course(client, patient["id"]) for _ in range(2)]
    for course in courses:
        for _ in range(2):
            await create_session(client, course["id"])
    await create_patient(client)
    params = {} if resource_type == "Patient" else {"patient": patient["id"]}
    oldest_first = paged_ids(await walk(ehr, resource_type, _count=1, **params))
    newest_first = paged_ids(
        await walk(ehr, resource_type, _sort="-_lastUpdated", _count=1, **params)
    )
    assert len(oldest_first) >= 2
    assert newest_first == oldest_first[::-1]
    explicit = paged_ids(await walk(ehr, resource_type, _sort="_lastUpdated", _count=1, **params))
    assert explicit == oldest_first
    response = await ehr.get(f"/fhir/R4/{resource_type}", params={"_sort": "date"})
    body = assert_outcome(response, 400, "invalid")
    assert "_sort" in body["issue"][0]["diagnostics"]


# --- _summary and _total -------------------------------------------------------------------


async def test_summary_count_is_the_total_alone(
    ehr: httpx.AsyncClient, observations: tuple[str, list[dict[str, Any]]]
) -> None:
    patient_id, created = observations
    bundle = await fhir_get(ehr, "Observation", patient=patient_id, _summary="count")
    assert bundle["total"] == len(created)
    assert "entry" not in bundle
    assert link(bundle, "next") is None
    assert query_of(link(bundle, "self"))["_summary"] == ["count"]
    narrowed = await fhir_get(
        ehr, "Observation", patient=patient_id, date="2025-02-01", _summary="count"
    )
    assert narrowed["total"] == 2
    # a count is counted, whatever `_total` says; includes are not counted
    for extra in ({"_total": "none"}, {"_include": "Observation:patient"}, {"_count": 1}):
        bundle = await fhir_get(ehr, "Observation", patient=patient_id, _summary="count", **extra)
        assert bundle["total"] == len(created)
        assert "entry" not in bundle


async def test_total_none_leaves_the_total_out_and_pages_as_usual(
    ehr: httpx.AsyncClient, observations: tuple[str, list[dict[str, Any]]]
) -> None:
    patient_id, created = observations
    bundles = await walk(ehr, "Observation", patient=patient_id, _total="none", _count=2)
    assert paged_ids(bundles) == expected_order(created, "_lastUpdated")
    assert all("total" not in bundle for bundle in bundles)
    assert all(query_of(link(b, "self"))["_total"] == ["none"] for b in bundles)
    accurate = await fhir_get(ehr, "Observation", patient=patient_id, _total="accurate")
    assert accurate["total"] == len(created)
    alone = await fhir_get(ehr, "Observation", patient=patient_id, _total="none", _count=0)
    assert "total" not in alone
    assert "entry" not in alone
    fhirpy_count = await fhir_get(
        ehr, "Observation", patient=patient_id, _count=0, _totalMethod="count"
    )
    assert fhirpy_count["total"] == len(created)


@pytest.mark.parametrize("resource_type", ["Patient", "Procedure", "CarePlan"])
async def test_every_search_counts_and_can_skip_counting(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient, resource_type: str
) -> None:
    course = await create_course(client)
    await create_session(client, course["id"])
    count = await fhir_get(ehr, resource_type, _summary="count")
    assert count["total"] == 1
    assert "entry" not in count
    uncounted = await fhir_get(ehr, resource_type, _total="none")
    assert "total" not in uncounted
    assert len(entries(uncounted)) == 1


# --- _include ------------------------------------------------------------------------------


async def test_include_adds_each_page_s_patients_once(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    first = await create_patient(client, name="First", external_id="MRN-INC-1")
    second = await create_patient(client, name="Second")
    await create_patient(client, name="Not referred to")
    for patient in (first, second, first, first, second):
        await create_observation(client, patient["id"])
    bundle = await fhir_get(ehr, "Observation", _include="Observation:patient")
    assert bundle["total"] == 5  # matches only
    modes = [(e["search"]["mode"], e["resource"]["resourceType"]) for e in bundle["entry"]]
    assert modes == [("match", "Observation")] * 5 + [("include", "Patient")] * 2
    included = entries(bundle, "Patient")
    assert [p["id"] for p in included] == [first["id"], second["id"]]  # first referred to first
    assert included[0] == await fhir_get(ehr, f"Patient/{first['id']}")
    assert query_of(link(bundle, "self"))["_include"] == ["Observation:patient"]

    # page by page: each page's own patients
    pages = await walk(ehr, "Observation", _include="Observation:patient", _count=2)
    assert [len(entries(page, "Observation")) for page in pages] == [2, 2, 1]
    assert [sorted(p["id"] for p in entries(page, "Patient")) for page in pages] == [
        sorted([first["id"], second["id"]]),
        [first["id"]],
        [second["id"]],
    ]
    assert all(
        query_of(link(page, "self"))["_include"] == ["Observation:patient"] for page in pages
    )


@pytest.mark.parametrize("resource_type", ["Observation", "Procedure", "CarePlan"])
@pytest.mark.parametrize("target", ["", ":Patient"])
async def test_each_clinical_search_includes_its_patients(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient, resource_type: str, target: str
) -> None:
    course = await create_course(client)
    await create_session(client, course["id"])
    await create_observation(client, course["patient_id"], course_id=course["id"])
    bundle = await fhir_get(
        ehr,
        resource_type,
        patient=course["patient_id"],
        _include=f"{resource_type}:patient{target}",
    )
    assert [e["search"]["mode"] for e in bundle["entry"]] == ["match", "include"]
    assert entries(bundle, "Patient")[0]["id"] == course["patient_id"]
    # without `_include`, matches alone
    plain = await fhir_get(ehr, resource_type, patient=course["patient_id"])
    assert [e["search"]["mode"] for e in plain["entry"]] == ["match"]


async def test_include_with_nothing_matched_includes_nothing(
    client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    bundle = await fhir_get(
        ehr, "Observation", patient=patient["id"], _include="Observation:patient"
    )
    assert bundle["total"] == 0
    assert "entry" not in bundle


async def test_a_patient_token_includes_only_itself(
    client: httpx.AsyncClient, as_role: RoleClient
) -> None:
    own, other = await create_patient(client), await create_patient(client, name="Hidden Other")
    for patient in (own, other):
        await create_observation(client, patient["id"])
    reader = await as_role("patient", own["id"])
    response = await reader.get(
        "/fhir/R4/Observation",
        params={"patient": own["id"], "_include": "Observation:patient"},
    )
    bundle = fhir_body(response)
    assert "Hidden Other" not in response.text
    assert [p["id"] for p in entries(bundle, "Patient")] == [own["id"]]
    other_response = await reader.get(
        "/fhir/R4/Observation",
        params={"patient": other["id"], "_include": "Observation:patient"},
    )
    assert_outcome(other_response, 404, "not-found")


async def test_includes_are_not_offered_where_there_is_no_patient_reference(
    ehr: httpx.AsyncClient,
) -> None:
    response = await ehr.get("/fhir/R4/Patient", params={"_include": "Patient:link"})
    assert_outcome(response, 400, "invalid")
    response = await ehr.get("/fhir/R4/Observation", params={"_include": "Observation:subject"})
    body = assert_outcome(response, 400, "invalid")
    assert "_include" in body["issue"][0]["diagnostics"]
