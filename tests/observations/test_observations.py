"""Observations: recording one, validation, client ids (idempotent replays), listing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.observations.models import Observation
from tests.factories import (
    API,
    ago,
    create_course,
    create_observation,
    create_patient,
    create_session,
    iso,
)
from tests.support import assert_problem, walk_pages


def _url(patient_id: str) -> str:
    return f"{API}/patients/{patient_id}/observations"


async def _count_observations(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Observation))).scalar_one())


def _body(**fields: Any) -> dict[str, Any]:
    return {"instrument": "pain-nrs", "value": 6, "recorded_at": ago(hours=1)} | fields


async def _stored(
    client: httpx.AsyncClient, patient_id: str, **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(_url(patient_id), params={"limit": 500} | params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@pytest.fixture
async def patient(client: httpx.AsyncClient) -> dict[str, Any]:
    return await create_patient(client)


# Recording one observation


async def test_create_returns_201_with_every_stored_field(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    course = await create_course(client, patient["id"])
    session = await create_session(client, course["id"])
    body = _body(
        instrument="pain-vas",
        value=42.5,
        recorded_at="2025-03-01T09:30:00+01:00",
        course_id=course["id"],
        session_id=session["id"],
        context="movement",
        source="clinician",
        note="after a long drive",
    )
    response = await client.post(_url(patient["id"]), json=body)
    assert response.status_code == 201, response.text
    observation = response.json()
    uuid.UUID(observation["id"])
    assert observation["patient_id"] == patient["id"]
    assert observation["recorded_at"] == "2025-03-01T08:30:00Z"  # stored and returned in UTC
    assert observation["received_at"].endswith("Z")
    expected = body | {"recorded_at": "2025-03-01T08:30:00Z"}
    assert observation | expected == observation
    assert await _stored(client, patient["id"]) == [observation]


async def test_optional_fields_default_to_null(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    observation = await create_observation(client, patient["id"])
    for name in ("course_id", "session_id", "context", "source", "note"):
        assert observation[name] is None
    assert observation["value"] == 6


async def test_whole_values_render_without_a_decimal_point(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    response = await client.post(_url(patient["id"]), json=_body(value=6.0))
    assert '"value":6,' in response.text


async def test_two_minutes_in_the_future_is_accepted(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    # A device clock a little ahead of the server's is normal.
    soon = iso(datetime.now(UTC) + timedelta(minutes=2))
    response = await client.post(_url(patient["id"]), json=_body(recorded_at=soon))
    assert response.status_code == 201, response.text


async def test_unknown_patient_is_404_problem_and_writes_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    unknown = str(uuid.uuid4())
    response = await client.post(_url(unknown), json=_body())
    problem = assert_problem(response, 404)
    assert unknown in problem["detail"]
    assert await _count_observations(engine) == 0


async def test_unknown_patient_is_404_before_any_other_reference_error(
    client: httpx.AsyncClient, patient: dict[str, Any], engine: AsyncEngine
) -> None:
    """The patient is checked by the INSERT's foreign key; a request that fails earlier (a bad
    course reference, a replayed id) still answers 404 for an unknown patient."""
    stored = await client.post(_url(patient["id"]), json=_body(id=str(uuid.uuid4())))
    assert stored.status_code == 201
    unknown = _url(str(uuid.uuid4()))

    with_course = await client.post(unknown, json=_body(course_id=str(uuid.uuid4())))
    with_session = await client.post(unknown, json=_body(session_id=str(uuid.uuid4())))
    replayed = await client.post(unknown, json=_body(id=stored.json()["id"]))

    for response in (with_course, with_session, replayed):
        assert_problem(response, 404)
    assert await _count_observations(engine) == 1


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"recorded_at": "2025-03-01T09:30:00"}, ["body", "recorded_at"]),  # naive
        ({"recorded_at": "01/03/2025"}, ["body", "recorded_at"]),
        ({"instrument": "pain-xyz"}, ["body", "instrument"]),
        ({"instrument": ""}, ["body", "instrument"]),
        ({"value": "6"}, ["body", "value"]),
        ({"value": True}, ["body", "value"]),
        ({"value": None}, ["body", "value"]),
        ({"context": "sleeping"}, ["body", "context"]),
        ({"source": "ehr"}, ["body", "source"]),
        ({"note": "x" * 2001}, ["body", "note"]),
        ({"id": "not-a-uuid"}, ["body", "id"]),
        ({"course_id": "not-a-uuid"}, ["body", "course_id"]),
        ({"patient_id": str(uuid.uuid4())}, ["body", "patient_id"]),  # not settable
        ({"received_at": "2025-03-01T09:30:00Z"}, ["body", "received_at"]),
        ({"pain": 6}, ["body", "pain"]),  # unknown field
    ],
)
async def test_invalid_observation_is_422_and_writes_nothing(
    client: httpx.AsyncClient, patient: dict[str, Any], fields: dict[str, Any], loc: list[str]
) -> None:
    response = await client.post(_url(patient["id"]), json=_body(**fields))
    assert_problem(response, 422, loc=loc)
    assert await _stored(client, patient["id"]) == []


@pytest.mark.parametrize("missing", ["instrument", "value", "recorded_at"])
async def test_required_field_missing_is_422(
    client: httpx.AsyncClient, patient: dict[str, Any], missing: str
) -> None:
    body = _body()
    del body[missing]
    assert_problem(await client.post(_url(patient["id"]), json=body), 422, loc=["body", missing])


async def test_ten_minutes_in_the_future_is_422(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    later = iso(datetime.now(UTC) + timedelta(minutes=10))
    response = await client.post(_url(patient["id"]), json=_body(recorded_at=later))
    assert_problem(response, 422, loc=["body", "recorded_at"])
    assert await _stored(client, patient["id"]) == []


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
async def test_non_finite_value_is_422(
    client: httpx.AsyncClient, patient: dict[str, Any], value: str
) -> None:
    # Python's JSON parser accepts these tokens, so the schema must refuse them.
    raw = f'{{"instrument": "pain-vas", "value": {value}, "recorded_at": "{ago(hours=1)}"}}'
    response = await client.post(
        _url(patient["id"]), content=raw, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, loc=["body", "value"])


async def test_value_error_names_the_value_field_not_the_model(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    response = await client.post(_url(patient["id"]), json=_body(value=11))
    body = assert_problem(response, 422)
    assert [e["loc"] for e in body["errors"]] == [["body", "value"]]


async def test_unknown_instrument_reports_only_the_instrument(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    # No range to check the value against: a second, misleading value error is not reported.
    response = await client.post(_url(patient["id"]), json=_body(instrument="vas", value=1000))
    body = assert_problem(response, 422)
    assert [e["loc"] for e in body["errors"]] == [["body", "instrument"]]


# References to courses and sessions


async def test_course_of_another_patient_is_422(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    foreign = await create_course(client)  # on another patient
    response = await client.post(_url(patient["id"]), json=_body(course_id=foreign["id"]))
    assert_problem(response, 422, loc=["body", "course_id"])
    assert await _stored(client, patient["id"]) == []


async def test_unknown_course_is_422(client: httpx.AsyncClient, patient: dict[str, Any]) -> None:
    response = await client.post(_url(patient["id"]), json=_body(course_id=str(uuid.uuid4())))
    assert_problem(response, 422, loc=["body", "course_id"])


async def test_session_of_another_patient_is_422(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    foreign = await create_session(client, (await create_course(client))["id"])
    response = await client.post(_url(patient["id"]), json=_body(session_id=foreign["id"]))
    assert_problem(response, 422, loc=["body", "session_id"])
    assert await _stored(client, patient["id"]) == []


async def test_session_of_another_course_of_the_same_patient_is_422(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    course = await create_course(client, patient["id"])
    other_course = await create_course(client, patient["id"], region="cervical")
    session = await create_session(client, other_course["id"])
    body = _body(course_id=course["id"], session_id=session["id"])
    response = await client.post(_url(patient["id"]), json=body)
    assert_problem(response, 422, loc=["body", "session_id"])
    assert await _stored(client, patient["id"]) == []


async def test_session_of_the_patient_without_course_is_accepted(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    session = await create_session(client, (await create_course(client, patient["id"]))["id"])
    response = await client.post(_url(patient["id"]), json=_body(session_id=session["id"]))
    assert response.status_code == 201, response.text
    assert response.json()["session_id"] == session["id"]


# Client-supplied ids: a retried post lands exactly once


async def test_replaying_a_client_id_returns_200_and_the_stored_observation(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    body = _body(id=str(uuid.uuid4()), recorded_at="2025-03-01T09:30:00+01:00", note="sore")
    first = await client.post(_url(patient["id"]), json=body)
    assert first.status_code == 201, first.text
    assert first.json()["id"] == body["id"]
    replay = await client.post(_url(patient["id"]), json=body)
    assert replay.status_code == 200, replay.text
    assert replay.json() == first.json()
    assert len(await _stored(client, patient["id"])) == 1


async def test_replay_with_the_same_moment_in_another_offset_is_the_same_content(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    body = _body(id=str(uuid.uuid4()), recorded_at="2025-03-01T09:30:00+01:00")
    assert (await client.post(_url(patient["id"]), json=body)).status_code == 201
    same = body | {"recorded_at": "2025-03-01T08:30:00Z", "value": 6.0}
    assert (await client.post(_url(patient["id"]), json=same)).status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        {"value": 7},
        {"instrument": "pain-vas"},
        {"recorded_at": "2025-03-01T09:31:00+01:00"},
        {"context": "rest"},
        {"source": "device"},
        {"note": "different"},
    ],
)
async def test_client_id_with_different_content_is_409_and_keeps_the_stored_row(
    client: httpx.AsyncClient, patient: dict[str, Any], change: dict[str, Any]
) -> None:
    body = _body(id=str(uuid.uuid4()), recorded_at="2025-03-01T09:30:00+01:00")
    stored = (await client.post(_url(patient["id"]), json=body)).json()
    response = await client.post(_url(patient["id"]), json=body | change)
    assert_problem(response, 409, loc=["body", "id"])
    assert await _stored(client, patient["id"]) == [stored]


async def test_client_id_replayed_with_another_course_is_409(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    lumbar = await create_course(client, patient["id"])
    cervical = await create_course(client, patient["id"], region="cervical")
    body = _body(id=str(uuid.uuid4()), course_id=lumbar["id"])
    assert (await client.post(_url(patient["id"]), json=body)).status_code == 201
    response = await client.post(_url(patient["id"]), json=body | {"course_id": cervical["id"]})
    assert_problem(response, 409, loc=["body", "id"])


async def test_client_id_replayed_without_its_attributed_course_is_a_replay(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    """The client named no course the first time either: the course it was attributed to is
    what it sent."""
    course = await create_course(client, patient["id"])
    body = _body(id=str(uuid.uuid4()))
    first = await client.post(_url(patient["id"]), json=body)
    assert (first.status_code, first.json()["course_id"]) == (201, course["id"])
    again = await client.post(_url(patient["id"]), json=body)
    assert (again.status_code, again.json()) == (200, first.json())


async def test_client_id_of_another_patients_observation_is_409(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    other = await create_patient(client)
    body = _body(id=str(uuid.uuid4()))
    theirs = (await client.post(_url(other["id"]), json=body)).json()
    # Same content, other patient: still a different observation, and nothing is revealed.
    response = await client.post(_url(patient["id"]), json=body)
    problem = assert_problem(response, 409, loc=["body", "id"])
    assert other["id"] not in response.text
    assert "errors" in problem
    assert await _stored(client, patient["id"]) == []
    assert await _stored(client, other["id"]) == [theirs]


async def test_concurrent_posts_of_one_client_id_store_it_once(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    body = _body(id=str(uuid.uuid4()))
    responses = await asyncio.gather(
        *(client.post(_url(patient["id"]), json=body) for _ in range(10))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 9 + [201], [r.text for r in responses]
    assert len({r.text for r in responses}) == 1  # every response shows the one stored row
    assert len(await _stored(client, patient["id"])) == 1


async def test_concurrent_conflicting_posts_of_one_client_id_store_one_of_them(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    observation_id = str(uuid.uuid4())
    responses = await asyncio.gather(
        *(
            client.post(_url(patient["id"]), json=_body(id=observation_id, value=v))
            for v in range(10)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 9, [r.text for r in responses]
    winner = next(r.json() for r in responses if r.status_code == 201)
    assert await _stored(client, patient["id"]) == [winner]


# Listing


async def test_list_is_ordered_by_recorded_at_not_by_arrival(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    late = await create_observation(client, patient["id"], recorded_at=ago(hours=1))
    early = await create_observation(client, patient["id"], recorded_at=ago(days=3))
    middle = await create_observation(client, patient["id"], recorded_at=ago(days=1))
    assert [o["id"] for o in await _stored(client, patient["id"])] == [
        early["id"],
        middle["id"],
        late["id"],
    ]


async def test_cursor_pagination_visits_every_observation_once_in_order(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    # Two share a recorded_at: the id breaks the tie, so nothing is skipped or repeated.
    start = datetime.now(UTC) - timedelta(days=30)
    moments = [start + timedelta(hours=i) for i in range(10)] + [start + timedelta(hours=4)]
    for moment in moments:
        await create_observation(client, patient["id"], recorded_at=iso(moment))
    pages = await walk_pages(client, _url(patient["id"]), 3)
    seen = [o for page in pages for o in page]
    assert len(pages) == 4
    assert len({o["id"] for o in seen}) == len(seen) == len(moments)
    keys = [(o["recorded_at"], o["id"]) for o in seen]
    assert keys == sorted(keys)


async def test_list_shows_only_the_patients_own_observations(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    mine = await create_observation(client, patient["id"])
    await create_observation(client, (await create_patient(client))["id"])
    assert await _stored(client, patient["id"]) == [mine]


async def test_list_filters_by_instrument(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    await create_observation(client, patient["id"], instrument="pain-nrs", value=5)
    odi = await create_observation(client, patient["id"], instrument="odi", value=40)
    assert await _stored(client, patient["id"], instrument="odi") == [odi]


async def test_list_filters_by_since_inclusive_and_until_exclusive(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    base = datetime(2025, 3, 1, 12, tzinfo=UTC)
    made = [
        await create_observation(client, patient["id"], recorded_at=iso(base + timedelta(days=d)))
        for d in range(4)
    ]
    since, until = iso(base + timedelta(days=1)), iso(base + timedelta(days=3))
    window = await _stored(client, patient["id"], since=since, until=until)
    assert window == made[1:3]
    assert await _stored(client, patient["id"], since=since) == made[1:]
    assert await _stored(client, patient["id"], until=until) == made[:3]


async def test_since_in_another_offset_means_the_same_moment(
    client: httpx.AsyncClient, patient: dict[str, Any]
) -> None:
    made = await create_observation(client, patient["id"], recorded_at="2025-03-01T12:00:00Z")
    assert await _stored(client, patient["id"], since="2025-03-01T13:00:00+01:00") == [made]
    assert await _stored(client, patient["id"], since="2025-03-01T13:00:01+01:00") == []


async def test_list_filters_by_course(client: httpx.AsyncClient, patient: dict[str, Any]) -> None:
    course = await create_course(client, patient["id"])
    # Before the course's window (14 days before its start, 14 days ago): no course.
    await create_observation(client, patient["id"], recorded_at=ago(days=40))
    in_course = await create_observation(client, patient["id"], course_id=course["id"])
    assert await _stored(client, patient["id"], course_id=course["id"]) == [in_course]


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"instrument": "pain-xyz"}, ["query", "instrument"]),
        ({"since": "2025-03-01T12:00:00"}, ["query", "since"]),  # naive
        ({"until": "yesterday"}, ["query", "until"]),
        ({"since": "2025-03-02T00:00:00Z", "until": "2025-03-01T00:00:00Z"}, ["query", "until"]),
        ({"course_id": "nope"}, ["query", "course_id"]),
        ({"limit": 501}, ["query", "limit"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"cursor": "garbage"}, ["query", "cursor"]),
    ],
)
async def test_invalid_list_query_is_422(
    client: httpx.AsyncClient, patient: dict[str, Any], params: dict[str, Any], loc: list[str]
) -> None:
    assert_problem(await client.get(_url(patient["id"]), params=params), 422, loc=loc)


async def test_list_for_unknown_patient_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(_url(str(uuid.uuid4()))), 404)


async def test_openapi_documents_the_observation_routes(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    post = paths[f"{API}/patients/{{patient_id}}/observations"]["post"]
    assert {"200", "201", "404", "409", "422"} <= set(post["responses"])
    assert f"{API}/instruments" in paths
    batch = paths[f"{API}/patients/{{patient_id}}/observations/batch"]["post"]
    ref = batch["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body_schema = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    items = body_schema["properties"]["observations"]["items"]
    assert items == {"$ref": "#/components/schemas/ObservationCreate"}
