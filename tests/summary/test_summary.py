"""The one-call patient summary for EHR integrations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx

from tests.factories import API, create_course, create_patient, create_session
from tests.support import Issue, MakeClient, assert_problem


def days_ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


async def test_summary_holds_patient_courses_sessions_trends_and_recommendation(
    client: httpx.AsyncClient,
    make_client: MakeClient,
    issue_token: Issue,
) -> None:
    patient = await create_patient(client, name="Ana", external_id="MRN-42")
    start = (datetime.now(UTC) - timedelta(days=12)).date().isoformat()
    course = await create_course(client, patient["id"], start_date=start, adjustment="confirm")
    for d in (11, 9, 7):
        await create_session(
            client, course["id"], performed_at=days_ago(d), ozone_concentration_ug_ml=20
        )
    last = await create_session(client, course["id"], performed_at=days_ago(4), volume_ml=10)
    scores = [(13, 8), (12, 8), (8, 6), (5, 5), (2, 4)]
    batch = [{"instrument": "pain-nrs", "value": v, "recorded_at": days_ago(d)} for d, v in scores]
    batch.append({"instrument": "schober", "value": 2.5, "recorded_at": days_ago(2)})
    await client.post(
        f"{API}/patients/{patient['id']}/observations/batch", json={"observations": batch}
    )
    await client.post(
        f"{API}/courses/{course['id']}/frequency",
        json={"sessions_per_week": 2, "reason": "tolerating well"},
    )

    integration = make_client(await issue_token("integration"))
    response = await integration.get(f"{API}/patients/{patient['id']}/summary")
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["patient"]["external_id"] == "MRN-42"
    [entry] = summary["courses"]
    assert entry["id"] == course["id"]
    assert entry["sessions_per_week"] == 2
    assert entry["phase"] == "consolidation"
    assert entry["sessions_done"] == 4
    assert entry["next_session_due"]
    assert [h["source"] for h in entry["frequency_history"]] == ["initial", "clinician"]
    assert entry["last_session"]["id"] == last["id"]
    assert entry["last_session"]["number"] == 4
    nrs = next(i for i in entry["instruments"] if i["instrument"] == "pain-nrs")
    assert nrs["baseline"] == 8
    assert nrs["last_value"] == 4
    assert nrs["status"] == "partial-responder"  # 8 → median(6, 5, 4) = 5: 37.5%
    assert entry["response_status"] == "partial-responder"
    assert {i["instrument"] for i in entry["instruments"]} == {"pain-nrs", "schober"}
    rec = entry["recommendation"]
    assert rec["course_id"] == course["id"]
    assert rec["rule"]
    assert rec["rationale"]
    assert rec["policy_version"] == "standard-v2"


async def test_summary_of_a_patient_without_courses(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    summary = (await client.get(f"{API}/patients/{patient['id']}/summary")).json()
    assert summary["patient"]["id"] == patient["id"]
    assert summary["courses"] == []


async def test_summary_of_an_unknown_patient_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"{API}/patients/{uuid.uuid4()}/summary"), 404)


async def test_dashboards_may_not_read_summaries(
    client: httpx.AsyncClient,
    make_client: MakeClient,
    issue_token: Issue,
) -> None:
    patient = await create_patient(client)
    dashboard = make_client(await issue_token("dashboard"))
    assert_problem(await dashboard.get(f"{API}/patients/{patient['id']}/summary"), 403)
