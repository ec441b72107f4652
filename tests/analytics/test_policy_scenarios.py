"""The frequency policy through the HTTP API: every rule of `standard-v1` in a scenario of its own.

The scenarios are built by tests/analytics/support.py: a course started some days ago, its
sessions, then all its pain scores in ONE batch (one evaluation), on the server's real clock.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.analytics.policy import evaluate
from app.courses.models import Course, FrequencyChange
from tests.analytics.support import (
    NON_RESPONDER,
    PARTIAL,
    REMISSION,
    RESPONDER,
    SEVEN_DAYS,
    WORSENING,
    Case,
    assert_frequency,
    assert_stepped_down_once,
    assert_unchanged,
    backdate,
    get_course,
    history,
    log_session,
    moment,
    recommendation,
    record,
    record_one,
    scenario,
    sessions_days,
    trends,
)
from tests.factories import API, ago, create_patient
from tests.support import assert_problem

# --- 1. inactive -------------------------------------------------------------------------------


async def test_paused_course_is_inactive_and_not_changed(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine)
    response = await client.patch(f"{API}/courses/{case.course_id}", json={"status": "paused"})
    assert response.status_code == 200, response.text
    await record(client, case, RESPONDER)  # would step an active course down

    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("inactive", "keep")
    assert rec["recommended_sessions_per_week"] == 3
    assert "paused" in rec["rationale"]
    assert rec["evidence"]["course_status"] == "paused"
    assert rec["evidence"]["applies_automatically"] is False
    assert (await get_course(client, case))["status"] == "paused"
    await assert_unchanged(client, case)


# --- 2. adverse event --------------------------------------------------------------------------


async def test_adverse_event_asks_for_review_until_a_later_session_without_one(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine, sessions=[18, 16])
    await log_session(client, case, days_ago=4, adverse_events=["transient paresthesia L5"])
    await record(client, case, RESPONDER)  # a responder: only the adverse event holds it back

    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("adverse-event", "review")
    assert rec["recommended_sessions_per_week"] == 3
    assert rec["current_sessions_per_week"] == 3
    assert "transient paresthesia L5" in rec["rationale"]
    assert rec["evidence"]["latest_session_adverse_events"] == ["transient paresthesia L5"]
    assert rec["evidence"]["applies_automatically"] is False
    await assert_unchanged(client, case)

    await log_session(client, case, days_ago=1)  # uneventful: the next rule decides again
    rec = await recommendation(client, case)
    assert rec["evidence"]["latest_session_adverse_events"] == []
    assert rec["rule"] != "adverse-event"
    await assert_frequency(client, case, 2, "consolidation")
    assert [(r["source"], r["rule"]) for r in await history(client, case)] == [
        ("initial", None),
        ("policy", "response-step-down"),
    ]


# --- 3. insufficient data ----------------------------------------------------------------------


async def test_too_few_values_keep_the_frequency(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine, values=[(19, 8), (10, 3)])

    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("insufficient-data", "keep")
    assert rec["recommended_sessions_per_week"] == 3
    assert "2 value(s) of pain-nrs" in rec["rationale"]
    assert rec["evidence"]["n"] == 2
    assert rec["evidence"]["status"] == "insufficient-data"
    assert rec["evidence"]["baseline"] is None
    await assert_unchanged(client, case)


async def test_values_before_any_session_are_all_baseline(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine, sessions=[], values=RESPONDER)
    rec = await recommendation(client, case)
    assert rec["rule"] == "insufficient-data"
    assert rec["evidence"]["sessions_done"] == 0
    await assert_unchanged(client, case)


# --- 4. worsening ------------------------------------------------------------------------------


async def test_worsening_at_three_a_week_asks_for_review(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine, values=WORSENING)

    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("worsening", "review")
    assert rec["recommended_sessions_per_week"] == 3
    assert "worsened from 4 at baseline to 7 now" in rec["rationale"]
    assert rec["evidence"]["status"] == "worsening"
    assert rec["evidence"]["improvement_abs"] == -3
    await assert_unchanged(client, case)


async def test_worsening_after_a_step_down_returns_to_three_a_week(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    # 6 → 3: a responder (3 points, 50%), stepped down to 2 at once.
    case = await scenario(client, engine, values=[(19, 6), (10, 4), (8, 3), (6, 3), (5, 3)])
    await assert_frequency(client, case, 2, "consolidation")

    await record(client, case, [(2, 9), (1, 9), (0.5, 9)])  # 6 → 9: worse by 3 points

    await assert_frequency(client, case, 3, "induction")
    rows = await history(client, case)
    assert [(r["source"], r["rule"], r["sessions_per_week"]) for r in rows] == [
        ("initial", None, 3),
        ("policy", "response-step-down", 2),
        ("policy", "worsening", 3),
    ]
    assert rows[-1]["phase"] == "induction"
    assert "from 2 to 3 sessions a week" in rows[-1]["reason"]
    # Now at 3 a week, the same worsening only asks for a review.
    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("worsening", "review")


# --- 5. max sessions ---------------------------------------------------------------------------


async def test_max_sessions_recommends_completion_but_changes_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine, max_sessions=3, values=RESPONDER)

    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("max-sessions", "complete")
    assert rec["recommended_sessions_per_week"] == 0
    assert rec["phase"] == "induction"
    assert "3 sessions done of the 3 prescribed" in rec["rationale"]
    assert rec["evidence"]["applies_automatically"] is False
    course = await get_course(client, case)
    assert course["status"] == "active"  # completing it is the clinician's decision
    await assert_unchanged(client, case)


# --- 6. remission ------------------------------------------------------------------------------


async def test_remission_recommends_completion(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine, values=REMISSION)

    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("remission", "complete")
    assert rec["recommended_sessions_per_week"] == 0
    assert "from 8 at baseline to 2 now (6 points, 75%" in rec["rationale"]
    assert rec["evidence"]["remission"] == 2
    assert (await get_course(client, case))["status"] == "active"
    await assert_unchanged(client, case)


# --- 7. response step-down ---------------------------------------------------------------------


async def test_responder_steps_down_at_once_in_an_auto_course(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine, values=RESPONDER)

    await assert_frequency(client, case, 2, "consolidation")
    rows = await history(client, case)
    assert [(r["source"], r["rule"], r["sessions_per_week"], r["phase"]) for r in rows] == [
        ("initial", None, 3, "induction"),
        ("policy", "response-step-down", 2, "consolidation"),
    ]
    assert "from 8 at baseline to 4 now (4 points, 50%" in rows[1]["reason"]
    assert "from 3 to 2 a week" in rows[1]["reason"]
    # Just changed: nothing more to do for 7 days.
    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("keep", "keep")
    assert rec["current_sessions_per_week"] == 2
    assert rec["evidence"]["last_change_source"] == "policy"


async def test_step_down_waits_seven_days_after_the_last_change(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine, values=RESPONDER)
    await assert_frequency(client, case, 2, "consolidation")

    # 7 days minus one second since the step-down: not yet.
    await backdate(engine, case, "policy", moment(SEVEN_DAYS - timedelta(seconds=1)))
    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("keep", "keep")
    await record_one(client, case, 4)
    await assert_frequency(client, case, 2, "consolidation")
    assert len(await history(client, case)) == 2

    # 7 days and a few seconds: the recommendation says so, reading it changes nothing...
    await backdate(engine, case, "policy", moment(SEVEN_DAYS + timedelta(seconds=5)))
    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("response-step-down", "decrease")
    assert rec["recommended_sessions_per_week"] == 1
    assert rec["phase"] == "maintenance"
    assert rec["evidence"]["applies_automatically"] is True
    assert re.search(r"and 7(\.0)? days since the last frequency change", rec["rationale"])
    await assert_frequency(client, case, 2, "consolidation")

    # ... and the next recording applies it.
    await record_one(client, case, 4)
    await assert_frequency(client, case, 1, "maintenance")
    rows = await history(client, case)
    assert [(r["source"], r["rule"], r["sessions_per_week"]) for r in rows[1:]] == [
        ("policy", "response-step-down", 2),
        ("policy", "response-step-down", 1),
    ]


# --- 8. induction complete ---------------------------------------------------------------------


async def test_partial_responder_steps_down_after_the_sixth_session(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine, sessions=sessions_days(5), values=PARTIAL)
    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("keep", "keep")
    assert rec["evidence"]["status"] == "partial-responder"
    assert rec["evidence"]["sessions_done"] == 5
    await assert_unchanged(client, case)

    await log_session(client, case, days_ago=1)  # the 6th

    await assert_frequency(client, case, 2, "consolidation")
    rows = await history(client, case)
    assert [(r["source"], r["rule"], r["sessions_per_week"]) for r in rows] == [
        ("initial", None, 3),
        ("policy", "induction-complete", 2),
    ]
    assert "after 6 sessions (induction is 6)" in rows[1]["reason"]
    assert "from 10 at baseline to 6 now (4 points, 40%" in rows[1]["reason"]


# --- 9. non-response ---------------------------------------------------------------------------


async def test_non_responder_is_reviewed_from_the_eighth_session(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine, sessions=sessions_days(7), values=NON_RESPONDER)
    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("keep", "keep")
    assert rec["evidence"]["status"] == "non-responder"

    await log_session(client, case, days_ago=1)  # the 8th

    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("non-response", "review")
    assert rec["recommended_sessions_per_week"] == 3
    assert "after 8 sessions (review from 8)" in rec["rationale"]
    assert rec["evidence"]["sessions_done"] == 8
    await assert_unchanged(client, case)


# --- 10. keep ----------------------------------------------------------------------------------


async def test_partial_responder_during_induction_keeps_three_a_week(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine, values=PARTIAL)

    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("keep", "keep")
    assert rec["recommended_sessions_per_week"] == 3
    assert rec["phase"] == "induction"
    assert "partial-responder: keep 3 sessions a week" in rec["rationale"]
    assert rec["evidence"]["applies_automatically"] is False
    await assert_unchanged(client, case)


# --- confirm vs auto ---------------------------------------------------------------------------


async def test_confirm_course_recommends_but_never_changes_by_itself(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    confirm = await scenario(client, engine, adjustment="confirm", values=RESPONDER)
    auto = await scenario(client, engine, adjustment="auto", values=RESPONDER)

    rec = await recommendation(client, confirm)
    assert (rec["rule"], rec["action"]) == ("response-step-down", "decrease")
    assert rec["recommended_sessions_per_week"] == 2
    assert rec["evidence"]["adjustment"] == "confirm"
    assert rec["evidence"]["applies_automatically"] is False
    await assert_unchanged(client, confirm)
    await record_one(client, confirm, 4)  # another recording: still nothing
    await assert_unchanged(client, confirm)

    await assert_frequency(client, auto, 2, "consolidation")
    assert [r["source"] for r in await history(client, auto)] == ["initial", "policy"]


async def test_clinician_applies_a_confirm_recommendation(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine, adjustment="confirm", values=RESPONDER)
    response = await client.post(
        f"{API}/courses/{case.course_id}/frequency",
        json={"sessions_per_week": 2, "reason": "responder: step down as recommended"},
    )
    assert response.status_code == 200, response.text
    await assert_frequency(client, case, 2, "consolidation")
    rows = await history(client, case)
    assert [(r["source"], r["rule"]) for r in rows] == [("initial", None), ("clinician", None)]
    assert rows[1]["reason"] == "responder: step down as recommended"


# --- a clinician's change holds for 7 days -----------------------------------------------------


async def set_frequency(client: httpx.AsyncClient, case: Case, sessions_per_week: float) -> None:
    response = await client.post(
        f"{API}/courses/{case.course_id}/frequency",
        json={"sessions_per_week": sessions_per_week, "reason": "patient prefers to stay at 3"},
    )
    assert response.status_code == 200, response.text


async def test_clinician_frequency_is_respected_for_seven_days(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine)
    await set_frequency(client, case, 3)
    await record(client, case, RESPONDER)  # would step down, but a clinician just decided

    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("keep", "keep")
    assert rec["evidence"]["last_change_source"] == "clinician"
    await assert_frequency(client, case, 3, "induction")

    await backdate(engine, case, "clinician", moment(SEVEN_DAYS - timedelta(seconds=1)))
    await record_one(client, case, 4)
    await assert_frequency(client, case, 3, "induction")
    assert [r["source"] for r in await history(client, case)] == ["initial", "clinician"]

    await backdate(engine, case, "clinician", moment(SEVEN_DAYS + timedelta(seconds=5)))
    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("response-step-down", "decrease")
    assert rec["evidence"]["applies_automatically"] is True
    assert "clinician_hold_until" not in rec["evidence"]
    await record_one(client, case, 4)
    await assert_frequency(client, case, 2, "consolidation")
    rows = await history(client, case)
    assert [(r["source"], r["rule"]) for r in rows] == [
        ("initial", None),
        ("clinician", None),
        ("policy", "response-step-down"),
    ]


async def test_clinician_hold_is_shown_in_the_recommendation(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    # A partial responder after 6 sessions: induction-complete fires whatever the days since
    # the last change, so only the clinician's hold keeps the frequency.
    case = await scenario(client, engine, sessions=sessions_days(6))
    await set_frequency(client, case, 3)
    await record(client, case, PARTIAL)

    rec = await recommendation(client, case)
    assert (rec["rule"], rec["action"]) == ("induction-complete", "decrease")
    assert rec["recommended_sessions_per_week"] == 2
    assert rec["evidence"]["applies_automatically"] is False
    hold_until = datetime.fromisoformat(rec["evidence"]["clinician_hold_until"])
    assert timedelta(0) < hold_until - datetime.now(UTC) <= SEVEN_DAYS
    assert "Not applied: a clinician set 3 a week" in rec["rationale"]
    await assert_frequency(client, case, 3, "induction")

    await backdate(engine, case, "clinician", moment(SEVEN_DAYS - timedelta(seconds=1)))
    await record_one(client, case, 6)
    await assert_frequency(client, case, 3, "induction")

    await backdate(engine, case, "clinician", moment(SEVEN_DAYS + timedelta(seconds=5)))
    await record_one(client, case, 6)
    await assert_frequency(client, case, 2, "consolidation")
    rows = await history(client, case)
    assert [(r["source"], r["rule"]) for r in rows][-1] == ("policy", "induction-complete")
    assert "Not applied" not in rows[-1]["reason"]


# --- one evaluation per recording request ------------------------------------------------------


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The rule of every policy evaluation the service makes from now on."""
    seen: list[str] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        rec = evaluate(*args, **kwargs)
        seen.append(rec.rule)
        return rec

    monkeypatch.setattr("app.analytics.service.evaluate", counting)
    return seen


async def test_a_batch_is_one_evaluation(
    client: httpx.AsyncClient, engine: AsyncEngine, evaluations: list[str]
) -> None:
    case = await scenario(client, engine)
    evaluations.clear()

    await record(client, case, RESPONDER)

    assert evaluations == ["response-step-down"]
    rows = await history(client, case)
    assert [(r["source"], r["rule"]) for r in rows] == [
        ("initial", None),
        ("policy", "response-step-down"),
    ]


async def test_an_observation_evaluates_only_the_course_it_belongs_to(
    client: httpx.AsyncClient, engine: AsyncEngine, evaluations: list[str]
) -> None:
    older = await scenario(client, engine)
    # A second active course of the same patient, whose latest session had an adverse event.
    newer = await scenario(
        client, engine, patient_id=older.patient_id, start_days_ago=3, sessions=[2]
    )
    await log_session(client, newer, days_ago=1, adverse_events=["local hematoma"])
    paused = await scenario(client, engine, patient_id=older.patient_id)
    response = await client.patch(f"{API}/courses/{paused.course_id}", json={"status": "paused"})
    assert response.status_code == 200, response.text
    evaluations.clear()

    await record(client, older, RESPONDER, named=True)

    # Not the other active course (its adverse event would ask for a review), nor the paused.
    assert evaluations == ["response-step-down"]
    await assert_frequency(client, older, 2, "consolidation")
    await assert_unchanged(client, newer)
    await assert_unchanged(client, paused)
    assert (await recommendation(client, newer))["evidence"]["sessions_done"] == 2
    assert (await recommendation(client, older))["evidence"]["sessions_done"] == 3


async def test_a_single_observation_evaluates_only_the_course_it_belongs_to(
    client: httpx.AsyncClient, engine: AsyncEngine, evaluations: list[str]
) -> None:
    """As a batch (above): one POST naming its course runs the policy on that course alone."""
    older = await scenario(client, engine)
    newer = await scenario(
        client, engine, patient_id=older.patient_id, start_days_ago=3, sessions=[2]
    )
    await log_session(client, newer, days_ago=1, adverse_events=["local hematoma"])
    evaluations.clear()

    await record_one(client, older, 5, course_id=older.course_id)

    assert evaluations == ["insufficient-data"]  # one value: nothing to judge yet
    await assert_unchanged(client, newer)


async def test_a_batch_is_judged_on_all_of_its_values_at_once(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    # Its first values alone would make a responder (8 → 4) and one at a time they would step
    # the course down; all together the current value is back at 8: nothing to do.
    case = await scenario(client, engine)
    await record(client, case, [(19, 8), (10, 4), (9, 4), (8, 4), (7, 8), (6, 8), (5, 8)])

    rec = await recommendation(client, case)
    assert rec["evidence"]["status"] == "non-responder"
    await assert_unchanged(client, case)


async def test_a_replayed_observation_changes_no_frequency(
    client: httpx.AsyncClient, engine: AsyncEngine, evaluations: list[str]
) -> None:
    case = await scenario(client, engine, values=RESPONDER)
    await assert_frequency(client, case, 2, "consolidation")
    observation = {
        "id": str(uuid.uuid4()),
        "instrument": "pain-nrs",
        "value": 4,
        "recorded_at": ago(hours=2),
    }
    url = f"{API}/patients/{case.patient_id}/observations"
    evaluations.clear()
    assert (await client.post(url, json=observation)).status_code == 201
    assert evaluations == ["keep"]
    # A week later an evaluation would step down to 1 a week...
    await backdate(engine, case, "policy", moment(SEVEN_DAYS + timedelta(seconds=5)))

    response = await client.post(url, json=observation)  # the same observation, replayed

    assert response.status_code == 200
    await assert_frequency(client, case, 2, "consolidation")  # a replay records nothing new
    # ... as the next new observation shows.
    await record_one(client, case, 4)
    assert evaluations[-1] == "response-step-down"
    await assert_frequency(client, case, 1, "maintenance")


async def test_concurrent_recordings_apply_a_step_down_once(
    client: httpx.AsyncClient, engine: AsyncEngine, evaluations: list[str]
) -> None:
    case = await scenario(client, engine, values=RESPONDER)
    await backdate(engine, case, "policy", moment(SEVEN_DAYS + timedelta(seconds=5)))
    evaluations.clear()
    url = f"{API}/patients/{case.patient_id}/observations"

    # Both requests see 2 a week and decide the same step (on PostgreSQL they overlap; SQLite
    # runs them one after the other).
    responses = await asyncio.gather(
        *(
            client.post(
                url, json={"instrument": "pain-nrs", "value": 4, "recorded_at": ago(seconds=s)}
            )
            for s in (1, 2)
        )
    )

    assert [r.status_code for r in responses] == [201, 201]
    await assert_stepped_down_once(client, case)


async def test_a_batch_of_replays_only_does_not_evaluate(
    client: httpx.AsyncClient, engine: AsyncEngine, evaluations: list[str]
) -> None:
    case = await scenario(client, engine, values=[(19, 8)])
    item = {
        "id": str(uuid.uuid4()),
        "instrument": "pain-nrs",
        "value": 4,
        "recorded_at": ago(days=3),
    }
    url = f"{API}/patients/{case.patient_id}/observations/batch"
    evaluations.clear()
    assert (await client.post(url, json={"observations": [item]})).status_code == 200
    assert len(evaluations) == 1
    response = await client.post(url, json={"observations": [item, item]})
    assert [r["status"] for r in response.json()["results"]] == ["duplicate", "duplicate"]
    assert len(evaluations) == 1


async def test_reading_the_recommendation_changes_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine, evaluations: list[str]
) -> None:
    case = await scenario(client, engine, sessions=sessions_days(6), values=PARTIAL)
    await assert_frequency(client, case, 2, "consolidation")
    await set_frequency(client, case, 3)
    await backdate(engine, case, "clinician", moment(timedelta(days=8)))
    # The policy row is now the latest, so backdate it as well, before the clinician's.
    await backdate(engine, case, "policy", moment(timedelta(days=9)))
    for _ in range(3):
        rec = await recommendation(client, case)
        assert rec["evidence"]["applies_automatically"] is True
    assert evaluations[-3:] == ["induction-complete"] * 3
    await assert_frequency(client, case, 3, "induction")
    assert [r["source"] for r in await history(client, case)] == ["initial", "policy", "clinician"]


# --- statuses through GET /trends --------------------------------------------------------------


@pytest.mark.parametrize(
    ("instrument", "baseline", "after", "status"),
    [
        # lumbar flexion: best 60°, MCID 13°
        ("rom-lumbar-flexion", 20, (40, 42, 45), "responder"),  # +22°, 55% of the way to 60
        ("rom-lumbar-flexion", 20, (34, 33, 33), "partial-responder"),  # +13°, 32.5%
        ("rom-lumbar-flexion", 20, (24, 25, 25), "non-responder"),  # +5° < MCID
        ("rom-lumbar-flexion", 40, (27, 26, 27), "worsening"),  # −13°: the MCID
        # Schober: best 5 cm, MCID 2 cm
        ("schober", 1, (3, 3, 3.5), "responder"),  # +2 cm, 50%
        ("schober", 0, (2, 2, 2), "partial-responder"),  # +2 cm, 40%
        ("schober", 2, (3, 3, 3), "non-responder"),  # +1 cm < MCID
        ("schober", 4, (2, 2, 2), "worsening"),  # −2 cm
    ],
)
async def test_status_where_higher_is_better(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    instrument: str,
    baseline: float,
    after: tuple[float, ...],
    status: str,
) -> None:
    values = [(19, baseline), *((10 - 2 * i, v) for i, v in enumerate(after))]
    case = await scenario(
        client, engine, instrument=instrument, values=values, adjustment="confirm"
    )

    body = await trends(client, case, instrument)
    assert body["course_id"] == case.course_id
    [trend] = body["instruments"]
    assert trend["instrument"] == instrument
    assert trend["baseline"] == baseline
    assert trend["status"] == status
    assert body["status"] == status  # the only instrument is the primary one
    if status == "worsening":
        assert trend["improvement_abs"] < 0


async def test_course_status_follows_the_primary_instrument(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine, adjustment="confirm")
    # Schober first: the only instrument with values.
    await record(client, case, [(19, 1), (10, 3), (8, 3), (6, 3)], instrument="schober")
    assert (await trends(client, case))["status"] == "responder"

    # Then ODI: it comes first in the catalogue, so it is the primary instrument.
    await record(client, case, [(19, 40), (10, 38), (8, 38), (6, 38)], instrument="odi")
    body = await trends(client, case)
    assert [t["instrument"] for t in body["instruments"]] == ["odi", "schober"]
    assert body["status"] == "non-responder"
    assert (await recommendation(client, case))["evidence"]["primary_instrument"] == "odi"
    only_schober = await trends(client, case, "schober")
    assert [t["status"] for t in only_schober["instruments"]] == ["responder"]

    # pain-vas outranks them...
    await record(client, case, [(19, 40), (10, 60), (8, 60), (6, 60)], instrument="pain-vas")
    assert (await trends(client, case))["status"] == "worsening"
    assert (await recommendation(client, case))["evidence"]["primary_instrument"] == "pain-vas"

    # ... and pain-nrs outranks pain-vas.
    await record(client, case, REMISSION)
    body = await trends(client, case)
    assert body["status"] == "responder"
    assert [t["instrument"] for t in body["instruments"]] == [
        "pain-nrs",
        "pain-vas",
        "odi",
        "schober",
    ]
    rec = await recommendation(client, case)
    assert rec["evidence"]["primary_instrument"] == "pain-nrs"
    assert rec["rule"] == "remission"


async def test_asking_for_one_instrument_does_not_change_the_course_status(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine, adjustment="confirm", values=PARTIAL)
    await record(client, case, [(19, 1), (10, 3), (8, 3), (6, 3)], instrument="schober")
    assert (await trends(client, case))["status"] == "partial-responder"  # pain-nrs's

    only_schober = await trends(client, case, "schober")

    assert [t["status"] for t in only_schober["instruments"]] == ["responder"]
    assert only_schober["status"] == "partial-responder"  # still pain-nrs's


@pytest.mark.parametrize(
    ("baseline", "current", "status", "pct", "mcid_reached"),
    [
        # pain-vas: best 0 mm, MCID 15 mm
        (60, 42, "partial-responder", 30, True),  # exactly 30% (18 mm)
        (60, 42.1, "non-responder", 29.833333333, True),  # just under 30%
        (51, 35.7, "partial-responder", 30, True),  # 30%, though 29.999999999999996 in binary
        (60, 30, "responder", 50, True),  # exactly 50%
        (60, 30.1, "partial-responder", 49.833333333, True),  # just under 50%
        (40, 25, "partial-responder", 37.5, True),  # exactly the MCID (15 mm)
        (40, 25.1, "non-responder", 37.25, False),  # just under the MCID
        (40, 55, "worsening", -37.5, False),  # worse by exactly the MCID
        (40, 54.9, "non-responder", -37.25, False),  # worse by just under the MCID
    ],
)
async def test_status_boundaries(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    baseline: float,
    current: float,
    status: str,
    pct: float,
    mcid_reached: bool,
) -> None:
    values = [(19, baseline), (10, current), (8, current), (6, current)]
    case = await scenario(client, engine, instrument="pain-vas", values=values)

    [trend] = (await trends(client, case, "pain-vas"))["instruments"]
    assert trend["current"] == current
    assert trend["improvement_pct"] == pytest.approx(pct, abs=1e-6)
    assert trend["mcid_reached"] is mcid_reached
    assert trend["status"] == status


# --- trends and recommendation: edges and errors -----------------------------------------------


async def test_trends_of_a_patient_without_a_course(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    response = await client.get(f"{API}/patients/{patient['id']}/trends")
    assert response.status_code == 200
    assert response.json() == {
        "patient_id": patient["id"],
        "course_id": None,
        "status": "insufficient-data",
        "instruments": [],
    }


async def test_trends_of_another_patients_course_is_not_found(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case = await scenario(client, engine, values=PARTIAL)
    other = await create_patient(client)
    response = await client.get(
        f"{API}/patients/{other['id']}/trends", params={"course_id": case.course_id}
    )
    assert_problem(response, 404)
    # The owner may ask for it by id.
    response = await client.get(
        f"{API}/patients/{case.patient_id}/trends", params={"course_id": case.course_id}
    )
    assert response.status_code == 200
    assert response.json()["course_id"] == case.course_id


async def test_trends_of_an_unknown_instrument_is_422(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    response = await client.get(
        f"{API}/patients/{patient['id']}/trends", params={"instrument": "pain-xyz"}
    )
    assert_problem(response, 422, loc=["query", "instrument"])


async def test_recommendation_of_an_unknown_course_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{API}/courses/{uuid.uuid4()}/recommendation")
    assert_problem(response, 404)


async def test_a_course_with_an_unknown_policy_is_rejected_and_nothing_is_written(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    patient = await create_patient(client)
    response = await client.post(
        f"{API}/patients/{patient['id']}/courses",
        json={
            "indication": "spondylosis",
            "region": "lumbar",
            "technique": "paravertebral",
            "start_date": datetime.now(UTC).date().isoformat(),
            "policy": "nope",
        },
    )
    body = assert_problem(response, 422, loc=["body", "policy"])
    assert "standard-v1" in str(body["errors"])  # the error names the available policies
    listed = await client.get(f"{API}/patients/{patient['id']}/courses")
    assert listed.json()["items"] == []
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(Course)) == 0
        assert await conn.scalar(select(func.count()).select_from(FrequencyChange)) == 0
