"""Batch upload (offline sync): each item is judged on its own, the valid ones stored together."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.factories import API, ago, create_course, create_patient, create_session
from tests.support import assert_problem


def _url(patient_id: str) -> str:
    return f"{API}/patients/{patient_id}/observations"


def _item(**fields: Any) -> dict[str, Any]:
    return {"instrument": "pain-nrs", "value": 5, "recorded_at": ago(hours=2)} | fields


async def _batch(
    client: httpx.AsyncClient, patient_id: str, items: list[Any]
) -> list[dict[str, Any]]:
    response = await client.post(f"{_url(patient_id)}/batch", json={"observations": items})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


async def _stored(client: httpx.AsyncClient, patient_id: str) -> list[dict[str, Any]]:
    response = await client.get(_url(patient_id), params={"limit": 500})
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@pytest.fixture
async def patient(client: httpx.AsyncClient) -> dict[str, Any]:
    return await create_patient(client)


async def test_valid_items_are_created_in_input_order(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    items = [_item(value=v, recorded_at=ago(hours=10 - v)) for v in range(3)]
    results = await _batch(client, patient["id"], items)
    assert [(r["index"], r["status"]) for r in results] == [
        (0, "created"),
        (1, "created"),
        (2, "created"),
    ]
    assert all("errors" not in r for r in results)
    stored = await _stored(client, patient["id"])
    assert [o["id"] for o in stored] == [r["id"] for r in results]
    assert [o["value"] for o in stored] == [0, 1, 2]


async def test_client_ids_are_kept(client: httpx.AsyncClient, patient: dict[str, Any]) -> None:
    client_id = str(uuid.uuid4())
    results = await _batch(client, patient["id"], [_item(id=client_id)])
    assert results == [{"index": 0, "id": client_id, "status": "created"}]


async def test_mixed_batch_gets_a_result_per_item(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    existing = _item(id=str(uuid.uuid4()), value=3)
    clashing = _item(id=str(uuid.uuid4()), value=4)
    await _batch(client, patient["id"], [existing, clashing])
    repeated = _item(id=str(uuid.uuid4()), value=2)
    repeated_id = repeated["id"]
    items: list[Any] = [
        _item(value=7),  # 0 valid
        _item(value=11),  # 1 out of range
        existing,  # 2 already stored, same content
        clashing | {"value": 9},  # 3 already stored, different content
        repeated,  # 4 first of a repeated id
        dict(repeated),  # 5 identical copy
        repeated | {"value": 8},  # 6 same id, different content
        "not an object",  # 7
        {"id": "nope", "instrument": "pain-nrs"},  # 8 no parseable id
        _item(id=str(uuid.uuid4()), recorded_at="2025-03-01T09:30:00"),  # 9 naive time
        _item(unknown="field"),  # 10
    ]
    results = await _batch(client, patient["id"], items)
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["status"] for r in results] == [
        "created",
        "rejected",
        "duplicate",
        "rejected",
        "created",
        "duplicate",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
    ]
    by_index = {r["index"]: r for r in results}
    assert by_index[1]["errors"][0]["loc"] == ["value"]  # relative to the item
    assert by_index[2]["id"] == existing["id"]
    assert by_index[3]["id"] == clashing["id"]
    assert by_index[3]["errors"][0]["loc"] == ["id"]
    assert by_index[4]["id"] == by_index[5]["id"] == by_index[6]["id"] == repeated_id
    assert by_index[6]["errors"][0]["loc"] == ["id"]
    assert by_index[7]["id"] is None
    assert by_index[8]["id"] is None
    assert {tuple(e["loc"]) for e in by_index[8]["errors"]} >= {("id",), ("value",)}
    assert by_index[9]["id"] == items[9]["id"]  # rejected, but its id is named
    assert by_index[9]["errors"][0]["loc"] == ["recorded_at"]
    assert by_index[10]["errors"][0]["loc"] == ["unknown"]
    for result in results:
        if result["status"] == "rejected":
            assert all(e["msg"] for e in result["errors"])
        else:
            assert "errors" not in result

    stored = {o["id"]: o for o in await _stored(client, patient["id"])}
    assert len(stored) == 4  # the two earlier ones, item 0 and item 4
    assert stored[by_index[0]["id"]]["value"] == 7
    assert stored[repeated_id]["value"] == 2
    assert stored[clashing["id"]]["value"] == 4  # unchanged


async def test_rejected_items_do_not_echo_their_values(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    response = await client.post(
        f"{_url(patient['id'])}/batch",
        json={"observations": [_item(context="SECRET-VALUE", note="x" * 2001)]},
    )
    assert "SECRET-VALUE" not in response.text
    assert response.json()["results"][0]["status"] == "rejected"


async def test_every_item_rejected_stores_nothing(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    results = await _batch(client, patient["id"], [_item(value=-1), _item(instrument="x")])
    assert [r["status"] for r in results] == ["rejected", "rejected"]
    assert await _stored(client, patient["id"]) == []


async def test_items_replayed_as_a_whole_batch_are_duplicates(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    items = [_item(id=str(uuid.uuid4()), value=v) for v in range(3)]
    first = await _batch(client, patient["id"], items)
    again = await _batch(client, patient["id"], items)
    assert [r["status"] for r in first] == ["created"] * 3
    assert [r["status"] for r in again] == ["duplicate"] * 3
    assert [r["id"] for r in again] == [r["id"] for r in first]
    assert len(await _stored(client, patient["id"])) == 3


async def test_copy_of_an_item_that_clashes_with_a_stored_one_is_rejected_too(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    stored = _item(id=str(uuid.uuid4()), value=1)
    await _batch(client, patient["id"], [stored])
    clash = stored | {"value": 2}
    results = await _batch(client, patient["id"], [clash, clash])
    assert [r["status"] for r in results] == ["rejected", "rejected"]
    assert [o["value"] for o in await _stored(client, patient["id"])] == [1]


async def test_first_valid_item_of_a_repeated_id_wins(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    repeated = str(uuid.uuid4())
    items = [_item(id=repeated, value=99), _item(id=repeated, value=3)]  # first is invalid
    results = await _batch(client, patient["id"], items)
    assert [r["status"] for r in results] == ["rejected", "created"]
    assert [o["value"] for o in await _stored(client, patient["id"])] == [3]


async def test_id_of_another_patients_observation_is_rejected(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    other = await create_patient(client)
    item = _item(id=str(uuid.uuid4()))
    await _batch(client, other["id"], [item])
    results = await _batch(client, patient["id"], [item])
    assert results[0]["status"] == "rejected"
    assert results[0]["errors"][0]["loc"] == ["id"]
    assert await _stored(client, patient["id"]) == []


async def test_references_are_checked_per_item(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    course = await create_course(client, patient["id"])
    session = await create_session(client, course["id"])
    other_course = await create_course(client, patient["id"], region="cervical")
    foreign_course = await create_course(client)
    foreign_session = await create_session(client, foreign_course["id"])
    items = [
        _item(course_id=course["id"], session_id=session["id"]),  # 0 fine
        _item(course_id=foreign_course["id"]),  # 1
        _item(session_id=foreign_session["id"]),  # 2
        _item(course_id=other_course["id"], session_id=session["id"]),  # 3 session of another
        _item(course_id=str(uuid.uuid4())),  # 4 no such course
        _item(session_id=session["id"]),  # 5 fine
    ]
    results = await _batch(client, patient["id"], items)
    assert [r["status"] for r in results] == [
        "created",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "created",
    ]
    assert results[1]["errors"][0]["loc"] == ["course_id"]
    assert results[2]["errors"][0]["loc"] == ["session_id"]
    assert results[3]["errors"][0]["loc"] == ["session_id"]
    assert results[4]["errors"][0]["loc"] == ["course_id"]
    assert len(await _stored(client, patient["id"])) == 2


async def test_five_hundred_items_are_accepted(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    items = [_item(value=i % 11, recorded_at=ago(minutes=i + 1)) for i in range(500)]
    results = await _batch(client, patient["id"], items)
    assert {r["status"] for r in results} == {"created"}
    assert len(await _stored(client, patient["id"])) == 500


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"observations": [_item() for _ in range(501)]}, ["body", "observations"]),
        ({"observations": []}, ["body", "observations"]),
        ({}, ["body", "observations"]),
        ({"observations": _item()}, ["body", "observations"]),  # not a list
        ({"observations": [_item()], "patient_id": "x"}, ["body", "patient_id"]),
    ],
    ids=["501-items", "empty", "missing", "not-a-list", "unknown-field"],
)
async def test_malformed_batch_is_422_and_stores_nothing(
    client: httpx.AsyncClient, patient: dict[str, Any], body: dict[str, Any], loc: list[str]
) -> None:
    response = await client.post(f"{_url(patient['id'])}/batch", json=body)
    assert_problem(response, 422, loc=loc)
    assert await _stored(client, patient["id"]) == []


async def test_batch_for_unknown_patient_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{_url(str(uuid.uuid4()))}/batch", json={"observations": [_item()]}
    )
    assert_problem(response, 404)
