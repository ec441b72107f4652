"""Sessions a week is a whole number from 1 to 7 everywhere a frequency is set (a new course,
a clinician's change; policy files in tests/analytics/test_policy.py): a value accepted once
must never poison a read, so a fraction is a 422 and writes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import API, create_course, create_patient
from tests.support import Issue, MakeClient, assert_problem

NOT_SESSIONS = [0, 8, -1, 2.5, 0.001, 6.999, 1e-300, "3", True, None, [3]]
WHOLE = "must be a whole number of sessions a week, from 1 to 7"


def _course_body(sessions_per_week: Any) -> dict[str, Any]:
    return {
        "indication": "lumbar pain",
        "region": "lumbar",
        "technique": "paravertebral",
        "start_date": "2026-11-01",
        "sessions_per_week": sessions_per_week,
    }


@pytest.mark.parametrize("value", NOT_SESSIONS, ids=repr)
async def test_a_course_is_created_only_with_a_whole_number_of_sessions(
    client: httpx.AsyncClient, value: Any
) -> None:
    patient = await create_patient(client)
    url = f"{API}/patients/{patient['id']}/courses"
    assert_problem(await client.post(url, json=_course_body(value)), 422,
                   loc=["body", "sessions_per_week"])  # fmt: skip
    assert (await client.get(url)).json()["items"] == []


@pytest.mark.parametrize("value", NOT_SESSIONS, ids=repr)
async def test_a_clinician_sets_only_a_whole_number_of_sessions(
    client: httpx.AsyncClient, value: Any
) -> None:
    course = await create_course(client)
    response = await client.post(
        f"{API}/courses/{course['id']}/frequency",
        json={"sessions_per_week": value, "reason": "tapering"},
    )
    assert_problem(response, 422, loc=["body", "sessions_per_week"])
    history = await client.get(f"{API}/courses/{course['id']}/frequency-history")
    assert [h["sessions_per_week"] for h in history.json()["items"]] == [3]


async def test_a_fraction_is_named_as_such(client: httpx.AsyncClient) -> None:
    course = await create_course(client)
    response = await client.post(
        f"{API}/courses/{course['id']}/frequency", json={"sessions_per_week": 2.5, "reason": "x"}
    )
    assert assert_problem(response, 422)["errors"] == [
        {"loc": ["body", "sessions_per_week"], "msg": WHOLE}
    ]


async def test_a_whole_number_written_as_a_decimal_is_that_number(
    client: httpx.AsyncClient,
) -> None:
    course = await create_course(client, sessions_per_week=2.0)
    assert course["sessions_per_week"] == 2
    changed = await client.post(
        f"{API}/courses/{course['id']}/frequency", json={"sessions_per_week": 1.0, "reason": "x"}
    )
    assert changed.json()["sessions_per_week"] == 1


@pytest.mark.parametrize("per_week", range(1, 8))
async def test_every_accepted_frequency_is_readable_everywhere(
    client: httpx.AsyncClient, make_client: MakeClient, issue_token: Issue, per_week: int
) -> None:
    """Set at creation and by a clinician: the course, its history, its recommendation, the
    patient's summary and trends, and the FHIR CarePlan all read it back."""
    course = await create_course(client, sessions_per_week=per_week)
    cid, pid = course["id"], course["patient_id"]
    other = 8 - per_week if per_week != 4 else 5
    changed = await client.post(
        f"{API}/courses/{cid}/frequency", json={"sessions_per_week": other, "reason": "x"}
    )
    assert changed.status_code == 200, changed.text
    ehr = make_client(await issue_token("integration"))
    reads = [
        await client.get(f"{API}/courses/{cid}"),
        await client.get(f"{API}/patients/{pid}/courses"),
        await client.get(f"{API}/courses/{cid}/frequency-history"),
        await client.get(f"{API}/courses/{cid}/recommendation"),
        await client.get(f"{API}/patients/{pid}/summary"),
        await client.get(f"{API}/patients/{pid}/trends"),
        await ehr.get(f"/fhir/R4/CarePlan?patient={pid}"),
        await ehr.get(f"/fhir/R4/Patient/{pid}/$everything"),
    ]
    for response in reads:
        assert response.status_code == 200, (response.request.url, response.text)
    history = reads[2].json()["items"]
    assert [h["sessions_per_week"] for h in history] == [per_week, other]
    [plan] = [e["resource"] for e in reads[6].json()["entry"]]
    repeat = plan["activity"][0]["detail"]["scheduledTiming"]["repeat"]
    assert repeat == {"frequency": other, "period": 1, "periodUnit": "wk"}
