"""`outcomes demo`: the pure cohort plan, then the cohort written through the API."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from statistics import median
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cli import main
from app.core.config import Settings, get_settings
from app.demo import (
    ADVERSE_EVENTS,
    INDICATIONS,
    INDUCTION_DAYS,
    MOBILITY_INSTRUMENTS,
    DemoError,
    PlannedPatient,
    allocate,
    build_plan,
    clamp_to_instrument,
    timeline,
    write_patient,
)
from app.observations.catalogue import BY_CODE
from tests.factories import API
from tests.support import empty_tables

TODAY = date(2026, 6, 15)  # a fixed past day: the plan is a function of it
START_OF_TODAY = datetime.combine(TODAY, datetime.min.time(), UTC)


@pytest.fixture(scope="module")
def cohort() -> list[PlannedPatient]:
    return build_plan(60, 42, TODAY)


def _pain(patient: PlannedPatient) -> list[float]:
    return [o.value for o in patient.course.observations if o.instrument == "pain-nrs"]


# ------------------------------------------------------------------------------ the pure plan


def test_same_seed_and_day_give_the_same_cohort(cohort: list[PlannedPatient]) -> None:
    assert build_plan(60, 42, TODAY) == cohort
    assert build_plan(60, 43, TODAY) != cohort
    assert build_plan(60, 42, TODAY - timedelta(days=1)) != cohort


def test_plan_is_independent_of_the_global_random_state(cohort: list[PlannedPatient]) -> None:
    import random

    random.seed(1)
    first = build_plan(5, 7, TODAY)
    random.seed(2)
    assert build_plan(5, 7, TODAY) == first


def test_archetypes_in_fixed_proportions(cohort: list[PlannedPatient]) -> None:
    counts = Counter(p.archetype for p in cohort)
    assert counts == {
        "responder": 27,
        "partial-responder": 15,
        "non-responder": 12,
        "worsening": 6,
    }


def test_allocate_hands_out_exactly_n_by_largest_remainder() -> None:
    import random

    items = allocate([("a", 0.45), ("b", 0.25), ("c", 0.2), ("d", 0.1)], 8, random.Random(0))
    assert len(items) == 8
    assert Counter(items) == {"a": 4, "b": 2, "c": 1, "d": 1}


def test_patients_are_numbered_and_plausible(cohort: list[PlannedPatient]) -> None:
    assert [p.external_id for p in cohort] == [f"DEMO-{n:04d}" for n in range(1, 61)]
    for patient in cohort:
        age_years = (TODAY - patient.birth_date).days / 365.25
        assert 24 <= age_years <= 89
        assert patient.sex in {"female", "male"}
        assert patient.name
        assert patient.condition


def test_every_indication_appears_with_a_matching_region(cohort: list[PlannedPatient]) -> None:
    assert {p.course.indication for p in cohort} == {i.name for i in INDICATIONS}
    regions = {i.name: {r for r, _ in i.regions} for i in INDICATIONS}
    for patient in cohort:
        assert patient.course.region in regions[patient.course.indication]
    techniques = Counter(p.course.technique for p in cohort)
    assert techniques["paravertebral"] + techniques["intramuscular"] >= 0.9 * len(cohort)
    assert Counter(p.course.adjustment for p in cohort) == {"auto": 42, "confirm": 18}
    assert {p.course.max_sessions for p in cohort} >= {None, 10, 12}


def test_schedule_is_three_a_week_then_two_a_week_before_today(
    cohort: list[PlannedPatient],
) -> None:
    for patient in cohort:
        course = patient.course
        elapsed = (TODAY - course.start_date).days
        assert 14 <= elapsed <= 56
        days = [(s.performed_at.date() - course.start_date).days for s in course.sessions]
        assert days == sorted(days)
        assert all(s.performed_at < START_OF_TODAY for s in course.sessions)
        assert sum(1 for d in days if d < INDUCTION_DAYS) == 6
        for week in range(INDUCTION_DAYS // 7, elapsed // 7 + 1):
            assert sum(1 for d in days if d // 7 == week) <= 2
        if course.max_sessions is not None:
            assert len(course.sessions) <= course.max_sessions


def test_session_logs_are_within_the_protocol(cohort: list[PlannedPatient]) -> None:
    sessions = [s for p in cohort for s in p.course.sessions]
    for session in sessions:
        assert 10 <= session.ozone_concentration_ug_ml <= 30
        assert 5 <= session.volume_ml <= 20
        assert 1 <= session.injection_points <= 50
        assert 0 <= session.pain_after <= session.pain_before <= 10
        assert session.sites
        assert set(session.adverse_events) <= set(ADVERSE_EVENTS)
    with_events = sum(1 for s in sessions if s.adverse_events)
    assert 0.005 <= with_events / len(sessions) <= 0.08  # ~3%


def test_observations_are_valid_readings_in_the_past(cohort: list[PlannedPatient]) -> None:
    ids = [o.id for p in cohort for o in p.course.observations]
    assert len(ids) == len(set(ids))
    for patient in cohort:
        course = patient.course
        for observation in course.observations:
            assert BY_CODE[observation.instrument].accepts(observation.value) is None
            assert observation.recorded_at < START_OF_TODAY
        first = course.observations[0]
        assert first.instrument == "pain-nrs"
        assert 1 <= (course.start_date - first.recorded_at.date()).days <= 7


def test_pain_before_every_session_and_weekly_measures(cohort: list[PlannedPatient]) -> None:
    for patient in cohort:
        course = patient.course
        by_session = Counter(
            (o.session_index, o.instrument)
            for o in course.observations
            if o.session_index is not None
        )
        for index in range(len(course.sessions)):
            assert by_session[(index, "pain-nrs")] == 1
        function = "ndi" if course.region == "cervical" else "odi"
        weeks = {s.performed_at.isocalendar()[:2] for s in course.sessions}
        for code in (function, *MOBILITY_INSTRUMENTS[course.region]):
            measured = [o for o in course.observations if o.instrument == code]
            # Once a week from the first session on (course weeks, not calendar weeks).
            assert abs(len(measured) - len(weeks)) <= 1
        at_home = [
            o for o in course.observations if o.instrument == "pain-nrs" and o.session_index is None
        ]
        assert len(at_home) >= 1  # the baseline at least


def test_timeline_posts_everything_once_in_time_order(cohort: list[PlannedPatient]) -> None:
    for patient in cohort:
        course = patient.course
        steps = timeline(course)
        assert [s.session_index for s in steps if s.session_index is not None] == list(
            range(len(course.sessions))
        )
        posted = [o for s in steps for o in s.observations]
        assert sorted(posted, key=lambda o: o.id) == sorted(course.observations, key=lambda o: o.id)
        assert [s.day for s in steps] == sorted(s.day for s in steps)
        sessions_posted = 0
        for step in steps:
            if step.session_index is not None:
                assert step.observations == ()
                assert course.sessions[step.session_index].performed_at.date() == step.day
                sessions_posted += 1
                continue
            # One batch per day, naming only sessions already posted.
            assert step.observations
            assert {o.recorded_at.date() for o in step.observations} == {step.day}
            linked = [o.session_index for o in step.observations if o.session_index is not None]
            assert all(index < sessions_posted for index in linked)
        batches = [s.day for s in steps if s.observations]
        assert len(batches) == len(set(batches))


def _improvement_pct(patient: PlannedPatient) -> float:
    pain = _pain(patient)
    baseline, current = pain[0], median(pain[-3:])
    return 100 * (baseline - current) / baseline


def test_trajectories_follow_the_archetypes(cohort: list[PlannedPatient]) -> None:
    responders = [p for p in cohort if p.archetype == "responder"]
    assert sum(1 for p in responders if median(_pain(p)[-3:]) <= 2) >= 0.8 * len(responders)
    for patient in cohort:
        pain = _pain(patient)
        improvement = _improvement_pct(patient)
        # Bounds on the noisy scores, a little wider than the archetype's own numbers.
        if patient.archetype == "responder":
            assert pain[0] >= 6
            assert median(pain[-3:]) <= 3
        elif patient.archetype == "partial-responder":
            assert 20 <= improvement <= 60
        elif patient.archetype == "non-responder":
            assert -20 <= improvement < 30
        else:
            assert median(pain[-3:]) - pain[0] >= 2


def test_values_are_held_to_the_instrument() -> None:
    assert clamp_to_instrument("pain-nrs", 11.4) == 10
    assert clamp_to_instrument("pain-nrs", -0.4) == 0
    assert clamp_to_instrument("pain-nrs", 6.6) == 7
    assert clamp_to_instrument("schober", 3.26) == 3.5
    assert clamp_to_instrument("odi", 41) in {40, 42}
    assert clamp_to_instrument("rom-cervical-rotation", 130) == 110


# ------------------------------------------------------------------------- unexpected answers


def _fake_api(
    batch_status: str,
    recommendation: dict[str, Any] | None = None,
    seen: list[httpx.Request] | None = None,
) -> httpx.AsyncClient:
    """An API that accepts everything, except that the batch answers ``batch_status`` items."""
    rec = recommendation or {"action": "keep", "rule": "keep", "recommended_sessions_per_week": 3}

    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        path = request.url.path
        if path.endswith("/observations/batch"):
            results = [{"index": 0, "id": "x", "status": batch_status}]
            return httpx.Response(200, json={"results": results})
        if path.endswith("/recommendation"):
            return httpx.Response(200, json=rec)
        if path.endswith("/frequency-history"):
            rows = [{"source": "initial", "rule": None}]
            return httpx.Response(200, json={"items": rows})
        if path.endswith("/frequency") or request.method == "PATCH":
            return httpx.Response(200, json={"id": "c"})
        return httpx.Response(201, json={"id": "00000000-0000-4000-8000-000000000001"})

    return httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://fake")


async def test_an_unexpected_status_stops_the_demo_with_the_request_named() -> None:
    def refuse(_request: httpx.Request) -> httpx.Response:
        body = {"status": 409, "detail": "a patient with this external_id exists"}
        return httpx.Response(409, json=body)

    planned = build_plan(1, 42, TODAY)[0]
    transport = httpx.MockTransport(refuse)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
        with pytest.raises(DemoError, match=r"POST /api/v1/patients answered 409.*external_id"):
            await write_patient(client, planned)


async def test_a_rejected_observation_stops_the_demo() -> None:
    planned = build_plan(1, 42, TODAY)[0]
    async with _fake_api("created") as client:
        await write_patient(client, planned)
    async with _fake_api("rejected") as client:
        with pytest.raises(DemoError, match="rejected"):
            await write_patient(client, planned)


@pytest.mark.parametrize("adjustment", ["auto", "confirm"])
@pytest.mark.parametrize("action", ["decrease", "review"])
@pytest.mark.parametrize("confirm", [True, False])
async def test_only_a_confirm_course_gets_the_clinicians_change(
    adjustment: str, action: str, confirm: bool
) -> None:
    planned = build_plan(1, 42, TODAY)[0]
    planned = dataclasses.replace(
        planned, course=dataclasses.replace(planned.course, adjustment=adjustment)
    )
    rec = {"action": action, "rule": "response-step-down", "recommended_sessions_per_week": 2}
    seen: list[httpx.Request] = []
    async with _fake_api("created", rec, seen) as client:
        outcome = await write_patient(client, planned, confirm=confirm)
    changes = [json.loads(r.content) for r in seen if r.url.path.endswith("/frequency")]
    asked = adjustment == "confirm" and action == "decrease"
    if asked and confirm:
        assert changes == [
            {
                "sessions_per_week": 2,
                "reason": "confirmed policy recommendation (response-step-down)",
            }
        ]
        assert outcome.confirmed
    else:
        assert changes == []
        assert not outcome.confirmed
    # A change asked for and not applied is left for a clinician, who is told whose it is.
    assert outcome.pending == (planned.external_id if asked and not confirm else None)
    assert (outcome.rule, outcome.action) == ("response-step-down", action)


# -------------------------------------------------------------------- through the API (SQLite/PG)

DEMO_PATIENTS = 6


@pytest.fixture
def demo_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OUTCOMES_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def _run_demo(*extra: str) -> int:
    # In a thread: the command runs its own event loop (migrations, then the cohort).
    argv = ["demo", "--patients", str(DEMO_PATIENTS), "--today", TODAY.isoformat(), *extra]
    return await asyncio.to_thread(main, argv)


async def _rows(engine: AsyncEngine, sql: str) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return [tuple(row) for row in (await conn.execute(text(sql))).all()]


async def _count(engine: AsyncEngine, table: str) -> int:
    return int((await _rows(engine, f"SELECT count(*) FROM {table}"))[0][0])  # noqa: S608


async def _snapshot(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "patients": await _rows(
            engine,
            "SELECT external_id, name, birth_date, sex, condition FROM patients "
            "ORDER BY external_id",
        ),
        "sessions": await _rows(
            engine,
            "SELECT performed_at, number, ozone_concentration_ug_ml, volume_ml, "
            "injection_points, pain_before, pain_after FROM treatment_sessions "
            "ORDER BY performed_at, number",
        ),
        "observations": await _rows(
            engine,
            "SELECT id, instrument, value, recorded_at, context, source FROM observations "
            "ORDER BY recorded_at, id",
        ),
        # The policy's outcomes follow from the data (changed_at and the rationale's day count
        # are the server's clock, so they are left out).
        "frequency_changes": await _rows(
            engine,
            "SELECT p.external_id, f.sessions_per_week, f.phase, f.source, f.rule "
            "FROM frequency_changes f JOIN courses c ON c.id = f.course_id "
            "JOIN patients p ON p.id = c.patient_id "
            "ORDER BY p.external_id, f.changed_at, f.source",
        ),
    }


@pytest.mark.usefixtures("demo_env")
async def test_demo_writes_the_cohort_through_the_api(
    engine: AsyncEngine, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = build_plan(DEMO_PATIENTS, 42, TODAY)
    assert await _run_demo() == 0
    out = capsys.readouterr().out
    assert f"demo cohort loaded: {DEMO_PATIENTS} patients" in out
    assert "archetypes: responder" in out

    assert await _count(engine, "patients") == DEMO_PATIENTS
    assert await _count(engine, "courses") == DEMO_PATIENTS
    assert await _count(engine, "treatment_sessions") == sum(len(p.course.sessions) for p in plan)
    assert await _count(engine, "observations") == sum(len(p.course.observations) for p in plan)
    concentrations = await _rows(
        engine, "SELECT min(ozone_concentration_ug_ml), max(ozone_concentration_ug_ml) "
        "FROM treatment_sessions"
    )  # fmt: skip
    low, high = concentrations[0]
    assert 10 <= low <= high <= 30

    for planned in plan:
        found = await client.get(f"{API}/patients", params={"external_id": planned.external_id})
        patient = found.json()["items"][0]
        courses = (await client.get(f"{API}/patients/{patient['id']}/courses")).json()["items"]
        assert [c["indication"] for c in courses] == [planned.course.indication]
        history = await client.get(f"{API}/courses/{courses[0]['id']}/frequency-history")
        assert history.status_code == 200, history.text
        rows = history.json()["items"]
        assert rows[0]["source"] == "initial"
        assert rows[0]["sessions_per_week"] == 3
        # Auto courses change by the policy alone; confirm courses only by the clinician.
        clinician = [r for r in rows if r["source"] == "clinician"]
        policy = [r for r in rows if r["source"] == "policy"]
        if planned.course.adjustment == "auto":
            assert clinician == []
            # A replay steps down at most once: the first step is "0 days" old (app/demo/).
            steps_down = [r for r in policy if r["sessions_per_week"] < 3]
            assert len(steps_down) <= 1
        else:
            assert policy == []
            assert len(clinician) <= 1
            for row in clinician:
                assert row["reason"].startswith("confirmed policy recommendation (")
        expected_status = "completed" if planned.course.reached_max_sessions else "active"
        assert courses[0]["status"] == expected_status


@pytest.mark.usefixtures("demo_env")
async def test_demo_twice_writes_nothing_the_second_time(
    engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _run_demo() == 0
    observations = await _count(engine, "observations")
    capsys.readouterr()
    assert await _run_demo() == 0
    assert "already loaded" in capsys.readouterr().out
    assert await _count(engine, "patients") == DEMO_PATIENTS
    assert await _count(engine, "observations") == observations


@pytest.mark.usefixtures("demo_env")
async def test_same_seed_and_day_give_identical_data(engine: AsyncEngine) -> None:
    assert await _run_demo("--seed", "7") == 0
    first = await _snapshot(engine)
    await empty_tables(engine)
    assert await _run_demo("--seed", "7") == 0
    assert await _snapshot(engine) == first
    assert len(first["observations"]) > 10 * DEMO_PATIENTS


def test_demo_refuses_a_day_in_the_future(capsys: pytest.CaptureFixture[str]) -> None:
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--today", tomorrow])
    assert exit_info.value.code == 2
    assert "future" in capsys.readouterr().err


@pytest.mark.parametrize("patients", ["0", "-3", "many"])
def test_demo_needs_at_least_one_patient(patients: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--patients", patients])
    assert exit_info.value.code == 2


POLICY_PATIENTS = 20  # enough for every outcome below with seed 42, small enough to be quick


@pytest.mark.usefixtures("demo_env")
async def test_the_policy_steps_down_responders_and_flags_non_responders(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--patients", str(POLICY_PATIENTS), "--today", TODAY.isoformat()]
    assert await asyncio.to_thread(main, argv) == 0
    out = capsys.readouterr().out
    assert "policy changes applied (auto courses): " in out
    # The demo's clinician confirms every other change asked for; the rest wait, named.
    counts = re.search(r"\(confirm courses\): (\d+) .*; left for you to confirm: (\d+)", out)
    assert counts is not None, out
    confirmed, pending = map(int, counts.groups())
    assert confirmed - pending in (0, 1)
    assert "recommendations to review: " in out
    assert "responder rate " in out

    plan = build_plan(POLICY_PATIENTS, 42, TODAY)
    step_downs, reviews = [], []
    for planned in plan:
        found = await client.get(f"{API}/patients", params={"external_id": planned.external_id})
        patient = found.json()["items"][0]
        course = (await client.get(f"{API}/patients/{patient['id']}/courses")).json()["items"][0]
        history = await client.get(f"{API}/courses/{course['id']}/frequency-history")
        policy = [r for r in history.json()["items"] if r["source"] == "policy"]
        if planned.course.adjustment == "confirm":
            assert policy == [], planned.external_id
        for row in policy:
            assert row["rule"] is not None
            # A step down from 3 to 2; the history row and the course agree.
            if row["rule"] in ("response-step-down", "induction-complete"):
                assert (row["sessions_per_week"], row["phase"]) == (2, "consolidation")
                assert course["sessions_per_week"] == 2
                step_downs.append(planned.external_id)
        answer = await client.get(f"{API}/courses/{course['id']}/recommendation")
        assert answer.status_code == 200, answer.text
        rec = answer.json()
        if course["status"] == "completed":
            assert rec["rule"] == "inactive"
        elif rec["action"] == "review" and rec["rule"] in ("non-response", "worsening"):
            assert rec["recommended_sessions_per_week"] == course["sessions_per_week"]
            reviews.append((planned.archetype, rec["rule"]))
    assert step_downs
    assert reviews
    # Never a responder (a partial responder whose scores fell short of 30% may be one).
    assert all(archetype != "responder" for archetype, _ in reviews)

    cohort = (await client.get(f"{API}/cohort/summary")).json()
    assert cohort["courses"] == POLICY_PATIENTS
    assert sum(cohort["by_status"].values()) == POLICY_PATIENTS
    assert 0 < cohort["responder_rate"] <= 1
