"""Batch upload (offline sync): each item is judged on its own, the valid ones stored together."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine.interfaces import CacheStats
from sqlalchemy.ext.asyncio import AsyncEngine

from app.observations.catalogue import CATALOGUE
from tests.factories import API, ago, create_course, create_patient, create_session
from tests.support import assert_problem


def _url(patient_id: str) -> str:
    return f"{API}/patients/{patient_id}/observations"


def _item(**fields: Any) -> dict[str, Any]:
    return {"instrument": "pain-nrs", "value": 5, "recorded_at": ago(hours=2)} | fields


async def _batch(
    client: httpx.AsyncClient,
    patient_id: str,
    items: list[Any],
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    url = f"{_url(patient_id)}/batch"
    response = await client.post(url, json={"observations": items}, headers=headers)
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


async def test_server_ids_are_distinct_random_uuids(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    """Items without an id get a version-4 UUID each (the batch's drawn in one go)."""
    kept = str(uuid.uuid4())
    items = [_item(value=v % 11, recorded_at=ago(minutes=v + 1)) for v in range(50)]
    results = await _batch(client, patient["id"], [*items[:10], _item(id=kept), *items[10:]])
    ids = [uuid.UUID(r["id"]) for r in results]
    assert ids[10] == uuid.UUID(kept)
    assert len(set(ids)) == 51
    assert {(i.version, i.variant) for i in ids[:10] + ids[11:]} == {(4, uuid.RFC_4122)}


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


# --- Storage: every field exactly, ids new, repeated or clashing, nulls, one cached INSERT ----


_ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
_NOTES = ["", "NULL", 'a "quote", a \\ backslash', "{braces, commas}", "ünïcødé ✓\nline 2"]


def _full_item(i: int, course_id: str, session_id: str) -> dict[str, Any]:
    """Item ``i`` of a batch that exercises every column: fractional values, microseconds and
    offsets, references, and each optional field both set and null."""
    instrument = CATALOGUE[i % len(CATALOGUE)]
    # Fractional values are no short decimals: any rounding on the way would show.
    value = i % int(instrument.max + 1) if instrument.integer else (i * 3.14159) % instrument.max
    base = datetime(2025, 3, 1, 9, 30, 15, 123456, tzinfo=UTC) - timedelta(minutes=i)
    recorded_at = (base + timedelta(microseconds=i)).astimezone(_ZONES[i % len(_ZONES)])
    return {
        "id": str(uuid.uuid4()),
        "instrument": instrument.code,
        "value": value,
        "recorded_at": recorded_at.isoformat(),
        "course_id": course_id if i % 3 == 0 else None,
        "session_id": session_id if i % 5 == 0 else None,
        "context": (None, "rest", "movement", "night", "morning")[i % 5],
        "source": (None, "patient", "clinician", "device")[i % 4],
        "note": ([None, *_NOTES, "x" * 2000])[i % 7],
    }


def _assert_stored_as_sent(
    stored: dict[str, Any], item: dict[str, Any], patient_id: str, session_course: str
) -> None:
    """Stored exactly as sent; an item naming only a session belongs to the session's course
    (``session_course``)."""
    assert stored["patient_id"] == patient_id
    sent_course = item.get("course_id") or (session_course if item.get("session_id") else None)
    assert stored["course_id"] == sent_course
    assert datetime.fromisoformat(stored["recorded_at"]) == datetime.fromisoformat(
        item["recorded_at"]
    )
    assert stored["value"] == item["value"]  # the same float, bit for bit
    for name in ("id", "instrument", "session_id", "context", "source", "note"):
        assert stored[name] == item.get(name), name


async def test_five_hundred_items_round_trip_every_field_exactly(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    course = await create_course(client, patient["id"])
    session = await create_session(client, course["id"])
    items = [_full_item(i, course["id"], session["id"]) for i in range(500)]
    before = datetime.now(UTC)
    results = await _batch(client, patient["id"], items)
    after = datetime.now(UTC)
    assert [(r["index"], r["id"], r["status"]) for r in results] == [
        (i, item["id"], "created") for i, item in enumerate(items)
    ]

    stored = {o["id"]: o for o in await _stored(client, patient["id"])}
    assert len(stored) == 500
    for item in items:
        _assert_stored_as_sent(stored[item["id"]], item, patient["id"], course["id"])
    # One receipt time for the whole batch, taken while it was being handled.
    received = {o["received_at"] for o in stored.values()}
    assert len(received) == 1
    assert before <= datetime.fromisoformat(received.pop()) <= after

    # The stored rows compare equal to what was sent: a replay is all duplicates.
    again = await _batch(client, patient["id"], items)
    assert {r["status"] for r in again} == {"duplicate"}


async def test_new_repeated_and_clashing_ids_in_one_large_batch(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    course = await create_course(client, patient["id"])
    session = await create_session(client, course["id"])
    # Another course of the patient, starting in half a year: no value here is in its window.
    later = (datetime.now(UTC) + timedelta(days=180)).date().isoformat()
    other = await create_course(client, patient["id"], start_date=later)
    earlier = [_full_item(i, course["id"], session["id"]) for i in range(60)]
    await _batch(client, patient["id"], earlier)

    def changed(item: dict[str, Any], k: int) -> dict[str, Any]:
        """The same id with one field changed, however slightly."""
        recorded_at = datetime.fromisoformat(item["recorded_at"]) + timedelta(microseconds=1)
        changes: list[dict[str, Any]] = [
            {"recorded_at": recorded_at.isoformat()},
            {"note": "changed" if item["note"] is None else None},
            {"context": "night" if item["context"] != "night" else "rest"},
            {"course_id": other["id"] if item["course_id"] else course["id"]},
            {"value": 0 if item["value"] != 0 else 1},
        ]
        return item | changes[k % len(changes)]

    new_with_ids = [_full_item(i, course["id"], session["id"]) for i in range(60, 160)]
    new_without_ids = [_item(value=i % 11, recorded_at=ago(minutes=i + 1)) for i in range(40)]
    items: list[dict[str, Any]] = []
    expected: list[str] = []
    for k, item in enumerate(earlier):
        items.append(changed(item, k) if k % 3 == 0 else item)
        expected.append("rejected" if k % 3 == 0 else "duplicate")
    for k, item in enumerate(new_with_ids):
        items.append(item)
        expected.append("created")
        if k % 10 == 0:  # repeated in the batch: a copy, then a clash
            items += [dict(item), item | {"source": "device" if item["source"] is None else None}]
            expected += ["duplicate", "rejected"]
    items += new_without_ids
    expected += ["created"] * len(new_without_ids)

    results = await _batch(client, patient["id"], items)
    assert [r["status"] for r in results] == expected
    for item, result in zip(items, results, strict=True):
        if "id" in item:
            assert result["id"] == item["id"]
        if result["status"] == "rejected":
            assert result["errors"] == [
                {"loc": ["id"], "msg": "an observation with this id already exists with "
                 "different content"}
            ]  # fmt: skip
        else:
            assert "errors" not in result

    stored = {o["id"]: o for o in await _stored(client, patient["id"])}
    assert len(stored) == 60 + 100 + 40
    for item in earlier + new_with_ids:  # the clashing posts changed nothing
        _assert_stored_as_sent(stored[item["id"]], item, patient["id"], course["id"])
    created = {r["id"] for r in results if r["status"] == "created"}
    assert len(created) == 140
    assert created <= stored.keys()


async def test_nulls_are_stored_as_nulls_and_compared_as_such(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    nullable = ("course_id", "session_id", "context", "source", "note")
    # Starting in half a year: no value here is attributed to it unless it names it.
    later = (datetime.now(UTC) + timedelta(days=180)).date().isoformat()
    course = await create_course(client, patient["id"], start_date=later)
    all_null = [
        _item(id=str(uuid.uuid4()), value=1) | dict.fromkeys(nullable),  # explicit nulls
        _item(id=str(uuid.uuid4()), value=2),  # left out
    ]
    some_null = [
        _item(id=str(uuid.uuid4()), value=3, context="rest", note=""),  # "" is not null
        _item(id=str(uuid.uuid4()), value=4, course_id=course["id"], note=None),
    ]
    for items in (all_null, some_null):
        assert {r["status"] for r in await _batch(client, patient["id"], items)} == {"created"}

    stored = {o["id"]: o for o in await _stored(client, patient["id"])}
    for item in all_null + some_null:
        for name in nullable:
            assert stored[item["id"]][name] == item.get(name), name
    # Replays match the stored nulls; "" and null differ.
    replays = [*all_null, *some_null, some_null[0] | {"note": None}, some_null[1] | {"note": ""}]
    results = await _batch(client, patient["id"], replays)
    assert [r["status"] for r in results] == ["duplicate"] * 4 + ["rejected"] * 2


async def test_concurrent_batches_of_the_same_ids_store_each_once(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    items = [_item(id=str(uuid.uuid4()), value=i % 11) for i in range(30)]
    responses = await asyncio.gather(
        *(
            client.post(f"{_url(patient['id'])}/batch", json={"observations": items})
            for _ in range(5)
        )
    )
    assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]
    for index in range(len(items)):
        statuses = sorted(r.json()["results"][index]["status"] for r in responses)
        assert statuses == ["created"] + ["duplicate"] * 4
    assert len(await _stored(client, patient["id"])) == 30


def _general_path() -> dict[str, str]:
    """An Idempotency-Key keeps a batch on SQLAlchemy's path on PostgreSQL too (without one it
    runs on the plain pool, one constant SQL string: app/recording/pg_store.py)."""
    return {"Idempotency-Key": str(uuid.uuid4())}


async def test_the_insert_is_compiled_once_whatever_the_batch_size(
    client: httpx.AsyncClient, patient: dict[str, Any], engine: AsyncEngine
) -> None:
    # Compiled (once per process).
    await _batch(client, patient["id"], [_item(), _item()], _general_path())
    inserts: list[tuple[str, CacheStats]] = []

    def capture(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
    ) -> None:
        if statement.startswith("INSERT INTO observations"):
            inserts.append((statement, context.cache_hit))

    event.listen(engine.sync_engine, "after_cursor_execute", capture)
    try:
        for size in (1, 7, 100):
            items = [_item(value=i % 11, recorded_at=ago(minutes=i + 1)) for i in range(size)]
            results = await _batch(client, patient["id"], items, _general_path())
            assert {r["status"] for r in results} == {"created"}
    finally:
        event.remove(engine.sync_engine, "after_cursor_execute", capture)

    assert inserts
    assert {hit for _, hit in inserts} == {CacheStats.CACHE_HIT}
    if engine.dialect.name == "postgresql":  # one statement, the same SQL for every size
        assert len(inserts) == 3
        assert len({statement for statement, _ in inserts}) == 1
    assert len(await _stored(client, patient["id"])) == 2 + 1 + 7 + 100


async def test_concurrent_batches_of_the_same_ids_in_other_orders_do_not_deadlock(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    for _ in range(6):  # a deadlock needs the inserts to overlap: a few tries
        items = [_item(id=str(uuid.uuid4()), value=i % 11) for i in range(500)]
        orders = [items, items[::-1], items[::2] + items[1::2], items[1::2][::-1] + items[::2]]
        responses = await asyncio.gather(
            *(client.post(f"{_url(patient['id'])}/batch", json={"observations": o}) for o in orders)
        )
        assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
        results = [r for response in responses for r in response.json()["results"]]
        created = sorted(r["id"] for r in results if r["status"] == "created")
        assert created == sorted(item["id"] for item in items)  # each once, by one of them
