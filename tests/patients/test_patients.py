"""Patients: create, read, list, update; unique external ids; validation."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta

import httpx
import pytest

from tests.factories import API, create_patient
from tests.support import assert_problem, walk_pages


async def test_create_patient_returns_201_with_all_fields(client: httpx.AsyncClient) -> None:
    body = {
        "external_id": "MRN-001",
        "name": "Ana Souza",
        "birth_date": "1968-04-02",
        "sex": "female",
        "condition": "post-discectomy pain L5-S1",
    }
    response = await client.post(f"{API}/patients", json=body)
    assert response.status_code == 201
    patient = response.json()
    assert patient | body == patient
    uuid.UUID(patient["id"])
    assert patient["created_at"].endswith("Z")
    assert patient["updated_at"].endswith("Z")


async def test_every_field_is_optional(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    assert patient["external_id"] is None
    assert patient["sex"] is None


async def test_get_patient(client: httpx.AsyncClient) -> None:
    created = await create_patient(client, name="Rui")
    response = await client.get(f"{API}/patients/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created


async def test_unknown_patient_is_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{API}/patients/{uuid.uuid4()}")
    assert_problem(response, 404)


async def test_malformed_patient_id_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{API}/patients/not-a-uuid")
    assert_problem(response, 422, loc=["path", "patient_id"])


async def test_duplicate_external_id_is_409_and_writes_nothing(client: httpx.AsyncClient) -> None:
    await create_patient(client, external_id="MRN-7")
    response = await client.post(f"{API}/patients", json={"external_id": "MRN-7", "name": "Other"})
    assert_problem(response, 409, loc=["body", "external_id"])
    listing = (await client.get(f"{API}/patients")).json()
    assert len(listing["items"]) == 1


async def test_patch_updates_only_given_fields(client: httpx.AsyncClient) -> None:
    created = await create_patient(client, name="Old", condition="spondylosis")
    response = await client.patch(f"{API}/patients/{created['id']}", json={"name": "New"})
    assert response.status_code == 200
    patient = response.json()
    assert patient["name"] == "New"
    assert patient["condition"] == "spondylosis"
    assert patient["updated_at"] >= created["updated_at"]


async def test_patch_null_clears_a_field(client: httpx.AsyncClient) -> None:
    created = await create_patient(client, condition="spondylosis")
    response = await client.patch(f"{API}/patients/{created['id']}", json={"condition": None})
    assert response.json()["condition"] is None


async def test_patch_to_taken_external_id_is_409(client: httpx.AsyncClient) -> None:
    await create_patient(client, external_id="A")
    other = await create_patient(client, external_id="B")
    response = await client.patch(f"{API}/patients/{other['id']}", json={"external_id": "A"})
    assert_problem(response, 409, loc=["body", "external_id"])
    unchanged = (await client.get(f"{API}/patients/{other['id']}")).json()
    assert unchanged["external_id"] == "B"


async def test_patch_keeping_own_external_id_is_fine(client: httpx.AsyncClient) -> None:
    created = await create_patient(client, external_id="A")
    response = await client.patch(f"{API}/patients/{created['id']}", json={"external_id": "A"})
    assert response.status_code == 200


async def test_patch_unknown_patient_is_404(client: httpx.AsyncClient) -> None:
    response = await client.patch(f"{API}/patients/{uuid.uuid4()}", json={"name": "x"})
    assert_problem(response, 404)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"sex": "f"}, ["body", "sex"]),
        ({"birth_date": "02/04/1968"}, ["body", "birth_date"]),
        ({"birth_date": (date.today() + timedelta(days=1)).isoformat()}, ["body", "birth_date"]),
        ({"birth_date": "1850-01-01"}, ["body", "birth_date"]),
        ({"external_id": ""}, ["body", "external_id"]),
        ({"external_id": "x" * 101}, ["body", "external_id"]),
        ({"name": "x" * 201}, ["body", "name"]),
        ({"nickname": "unknown field"}, ["body", "nickname"]),
        ({"id": str(uuid.uuid4())}, ["body", "id"]),
    ],
)
async def test_invalid_patient_is_422_and_writes_nothing(
    client: httpx.AsyncClient, body: dict[str, object], loc: list[str]
) -> None:
    response = await client.post(f"{API}/patients", json=body)
    assert_problem(response, 422, loc=loc)
    assert (await client.get(f"{API}/patients")).json()["items"] == []


async def test_patch_rejects_unknown_fields(client: httpx.AsyncClient) -> None:
    created = await create_patient(client)
    response = await client.patch(
        f"{API}/patients/{created['id']}", json={"created_at": "2020-01-01T00:00:00Z"}
    )
    assert_problem(response, 422, loc=["body", "created_at"])


async def test_list_filters_by_external_id(client: httpx.AsyncClient) -> None:
    await create_patient(client, external_id="A")
    b = await create_patient(client, external_id="B")
    page = (await client.get(f"{API}/patients", params={"external_id": "B"})).json()
    assert [p["id"] for p in page["items"]] == [b["id"]]
    assert page["next_cursor"] is None


async def test_cursor_pagination_visits_every_patient_once(client: httpx.AsyncClient) -> None:
    created = [(await create_patient(client, name=f"P{i}"))["id"] for i in range(11)]
    pages = await walk_pages(client, f"{API}/patients", 4)
    seen = [p["id"] for page in pages for p in page]
    assert len(pages) == 3
    assert seen == created  # creation order, no duplicates, no gaps


async def test_concurrent_creates_with_one_external_id_make_one_patient(
    client: httpx.AsyncClient,
) -> None:
    responses = await asyncio.gather(
        *(client.post(f"{API}/patients", json={"external_id": "RACE-1"}) for _ in range(6))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409, 409], [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, loc=["body", "external_id"])
    listing = (await client.get(f"{API}/patients", params={"external_id": "RACE-1"})).json()
    assert len(listing["items"]) == 1
