"""The clinic's cases that v1 got wrong, through the HTTP API, under `standard-v2` (the default
for new courses): each value steers only its own course, the baseline is what was measured
before treatment, normal mobility is not a failure, ties fall the same way on every read, a
long pause and an adverse event are for a clinician to see (docs/analytics.md, v2)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.courses.models import Course
from tests.analytics.support import (
    THREE_SESSIONS,
    Case,
    assert_frequency,
    get_course,
    history,
    log_session,
    recommendation,
    record,
    scenario,
    trends,
)
from tests.factories import API, ago, create_patient
from tests.support import assert_problem


async def v2(client: httpx.AsyncClient, engine: AsyncEngine, **fields: Any) -> Case:
    case = await scenario(client, engine, policy="standard-v2", **fields)
    assert (await get_course(client, case))["policy"] == "standard-v2"
    return case


async def course_trends(client: httpx.AsyncClient, case: Case) -> dict[str, Any]:
    response = await client.get(
        f"{API}/patients/{case.patient_id}/trends", params={"course_id": case.course_id}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def pain(body: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(i for i in body["instruments"] if i["instrument"] == "pain-nrs")
    return found


# --- 1. Two courses at once ---------------------------------------------------------------------


async def test_two_courses_at_once_are_each_steered_by_their_own_values(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    lumbar = await v2(client, engine)
    cervical = await v2(client, engine, patient_id=lumbar.patient_id, region="cervical")
    await record(client, lumbar, [(19, 8), (10, 5), (8, 4), (6, 3), (5, 3)], named=True)
    await record(client, cervical, [(19, 7), (10, 8), (8, 8), (6, 8), (5, 8)], named=True)

    lumbar_pain, cervical_pain = (
        pain(await course_trends(client, lumbar)),
        pain(await course_trends(client, cervical)),
    )
    assert (lumbar_pain["n"], lumbar_pain["baseline"], lumbar_pain["current"]) == (5, 8, 3)
    assert (cervical_pain["n"], cervical_pain["baseline"], cervical_pain["current"]) == (5, 7, 8)
    assert lumbar_pain["status"] == "responder"
    assert cervical_pain["status"] == "non-responder"
    await assert_frequency(client, lumbar, 2, "consolidation")  # stepped down
    await assert_frequency(client, cervical, 3, "induction")  # its pain never improved
    assert [r["source"] for r in await history(client, cervical)] == ["initial"]


async def test_a_value_that_fits_two_courses_must_name_one(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    lumbar = await v2(client, engine)
    cervical = await v2(client, engine, patient_id=lumbar.patient_id, region="cervical")
    url = f"{API}/patients/{lumbar.patient_id}/observations"
    body = {"instrument": "pain-nrs", "value": 5, "recorded_at": ago(hours=1)}

    refused = await client.post(url, json=body)
    problem = assert_problem(refused, 422, loc=["body", "course_id"])
    assert problem["errors"][0]["msg"] == (
        "required: this patient has 2 courses this measure could belong to"
    )
    # A measure of one region needs no course: it fits one.
    odi = await client.post(url, json=body | {"instrument": "odi", "value": 40})
    ndi = await client.post(url, json=body | {"instrument": "ndi", "value": 30})
    assert odi.json()["course_id"] == lumbar.course_id
    assert ndi.json()["course_id"] == cervical.course_id
    # In a batch, that item alone is rejected.
    items = [body, body | {"course_id": cervical.course_id}]
    batch = await client.post(f"{url}/batch", json={"observations": items})
    results = batch.json()["results"]
    assert [r["status"] for r in results] == ["rejected", "created"]
    assert results[0]["errors"] == [{"loc": ["course_id"], "msg": problem["errors"][0]["msg"]}]
    listed = (await client.get(url, params={"limit": 50})).json()["items"]
    assert len(listed) == 3  # the ambiguous one was never stored


# --- 2. The baseline is before treatment --------------------------------------------------------


async def test_a_score_right_after_the_first_injection_is_not_the_baseline(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await v2(client, engine, start_days_ago=10, sessions=())
    await log_session(client, case, days_ago=9, pain_before=8)
    # 4 an hour after the first injection (its immediate effect), then 6, 6, 6.
    after = [(9 - 1 / 24, 4), (7, 6), (5, 6), (3, 6)]
    await record(client, case, after)

    trend = pain(await course_trends(client, case))
    assert (trend["n"], trend["baseline"], trend["current"]) == (5, 8, 6)  # pain_before counts
    assert trend["status"] != "worsening"
    rec = await recommendation(client, case)
    assert rec["rule"] not in ("worsening", "adverse-event")
    await assert_frequency(client, case, 3, "induction")


async def test_no_score_before_treatment_is_insufficient_data_asking_for_one(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await v2(client, engine, start_days_ago=10, sessions=(9,))
    await record(client, case, [(8, 4), (6, 6), (5, 6), (3, 6)])  # all after the first session

    trend = pain(await course_trends(client, case))
    assert (trend["status"], trend["baseline"]) == ("insufficient-data", None)
    assert "before" in trend["reason"]
    rec = await recommendation(client, case)
    assert rec["rule"] == "insufficient-data"
    assert "before the next session" in rec["rationale"]


# --- 3. Normal mobility ------------------------------------------------------------------------


async def test_normal_lumbar_flexion_is_normal_not_a_non_responder(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await v2(client, engine, sessions=THREE_SESSIONS)
    await record(
        client,
        case,
        [(19, 60), (10, 70), (8, 80), (6, 80), (5, 80)],
        instrument="rom-lumbar-flexion",
    )
    body = await course_trends(client, case)
    assert body["status"] == "normal"
    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("no-deficit", "review")
    assert "check the indication" in rec["rationale"]


async def test_flexion_falling_but_still_normal_is_not_worsening(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await v2(client, engine)
    await record(
        client,
        case,
        [(19, 80), (10, 70), (8, 65), (6, 65), (5, 65)],
        instrument="rom-lumbar-flexion",
    )
    trend = (await course_trends(client, case))["instruments"][0]
    assert (trend["baseline"], trend["current"], trend["status"]) == (80, 65, "normal")
    assert trend["improvement_pct"] is not None
    assert trend["improvement_pct"] <= 100


# --- 4. Ties -----------------------------------------------------------------------------------


async def test_values_at_the_same_moment_fall_the_same_way_on_every_read(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """Baseline 8, then 8, a tie of 2 and 7, then 5 and 4: the current value (median of the
    last three) is 5 (partial responder) when 2 sorts before 7, 4 (responder) otherwise. The
    order is (recorded_at, id): the smaller id first, whatever order they were posted in."""
    case = await v2(client, engine, adjustment="confirm")
    tie = ago(days=7)
    low, high = sorted((uuid.uuid4(), uuid.uuid4()))
    url = f"{API}/patients/{case.patient_id}/observations"
    await record(client, case, [(19, 8), (10, 8)])
    for observation_id, value in ((high, 7), (low, 2)):  # posted in the other order
        body = {"id": str(observation_id), "instrument": "pain-nrs", "value": value}
        response = await client.post(url, json=body | {"recorded_at": tie})
        assert response.status_code == 201, response.text
    await record(client, case, [(6, 5), (5, 4)])

    reads = [pain(await course_trends(client, case)) for _ in range(5)]
    assert {(r["current"], r["status"]) for r in reads} == {(5, "partial-responder")}


# --- 5. Pause and adverse events ---------------------------------------------------------------


async def test_a_course_resumed_after_thirty_days_is_for_review_and_due_now(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await v2(client, engine, start_days_ago=40, sessions=(38, 36, 34))
    url = f"{API}/courses/{case.course_id}"
    assert (await client.patch(url, json={"status": "paused"})).status_code == 200
    async with engine.begin() as conn:  # paused 30 days ago
        await conn.execute(
            update(Course)
            .where(Course.id == uuid.UUID(case.course_id))
            .values(paused_at=datetime.now(UTC) - timedelta(days=30))
        )
    resumed = await client.patch(url, json={"status": "active"})

    assert resumed.status_code == 200
    assert resumed.json()["next_session_due"] == datetime.now(UTC).date().isoformat()
    rows = await history(client, case)
    assert (rows[-1]["source"], rows[-1]["sessions_per_week"], rows[-1]["reason"]) == (
        "clinician",
        3,
        "resumed after 30 days paused",
    )
    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("resumed-after-pause", "review")
    # A clinician's frequency decision ends the review.
    decided = await client.post(
        f"{url}/frequency", json={"sessions_per_week": 2, "reason": "seen: restart at 2"}
    )
    assert decided.status_code == 200, decided.text
    assert (await recommendation(client, case))["rule"] != "resumed-after-pause"


async def test_an_adverse_event_holds_the_course_until_a_clinician_acknowledges_it(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await v2(client, engine, sessions=(18, 16))
    # Another patient's clinician decision acknowledges nothing here.
    other = await v2(client, engine)
    response = await client.post(
        f"{API}/courses/{other.course_id}/frequency",
        json={"sessions_per_week": 2, "reason": "another patient"},
    )
    assert response.status_code == 200, response.text
    await log_session(client, case, days_ago=14, adverse_events=["vasovagal syncope"])
    await log_session(client, case, days_ago=12)  # a clean session does not clear it
    await record(client, case, [(19, 8), (10, 5), (8, 4), (6, 4), (5, 4)])  # a responder

    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("adverse-event", "review")
    assert "vasovagal syncope" in rec["rationale"]
    await assert_frequency(client, case, 3, "induction")  # not stepped down behind its back

    same = await client.post(
        f"{API}/courses/{case.course_id}/frequency",
        json={"sessions_per_week": 3, "reason": "reviewed the syncope: continue"},
    )
    assert same.status_code == 200, same.text
    assert (await recommendation(client, case))["rule"] != "adverse-event"


async def test_the_first_patient_without_a_course_still_records(client: httpx.AsyncClient) -> None:
    """No course at all: the value is stored without one, and nothing is decided."""
    patient = await create_patient(client)
    url = f"{API}/patients/{patient['id']}/observations"
    body = {"instrument": "pain-nrs", "value": 5, "recorded_at": ago(hours=1)}
    response = await client.post(url, json=body)
    assert (response.status_code, response.json()["course_id"]) == (201, None)
    assert (await trends(client, Case(patient["id"], str(uuid.uuid4()))))["course_id"] is None


async def test_in_a_batch_a_measure_of_one_region_is_stored_with_its_one_course(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """As in a single POST: ODI scores are the lumbar course's alone. Stored without a course,
    they would count for the cervical course too, whose window holds them."""
    lumbar = await v2(client, engine)
    cervical = await v2(client, engine, patient_id=lumbar.patient_id, region="cervical")
    await record(client, lumbar, [(19, 40), (10, 30), (8, 25)], instrument="odi")

    url = f"{API}/patients/{lumbar.patient_id}/observations"
    stored = (await client.get(url, params={"instrument": "odi", "limit": 50})).json()["items"]
    assert [o["course_id"] for o in stored] == [lumbar.course_id] * 3
    lumbar_odi = (await course_trends(client, lumbar))["instruments"]
    assert [(t["instrument"], t["n"]) for t in lumbar_odi] == [("odi", 3)]
    assert (await course_trends(client, cervical))["instruments"] == []
