"""The writer: the plan posted through the HTTP API in-process, patient by patient."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import date
from typing import Any

import httpx

from app.auth.service import TokenService
from app.core.config import Settings
from app.core.migrations import upgrade
from app.core.state import app_state
from app.demo.plan import (
    PlannedObservation,
    PlannedPatient,
    PlannedSession,
    build_plan,
    timeline,
)
from app.demo.summary import CourseOutcome, DemoSummary, summarise
from app.observations.catalogue import BY_CODE

API = "/api/v1"
BATCH_LIMIT = 500  # the observations batch endpoint's maximum


class DemoError(RuntimeError):
    """The API answered a demo request with a status the demo did not expect."""


def _problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body)
    return str(body)[:200]


async def _call(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    expected: int,
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    response = await client.request(method, path, json=body, params=params)
    if response.status_code != expected:
        raise DemoError(
            f"{method} {path} answered {response.status_code}, expected {expected}: "
            f"{_problem_detail(response)}"
        )
    answer: dict[str, Any] = response.json()
    return answer


def _session_body(session: PlannedSession) -> dict[str, Any]:
    body: dict[str, Any] = {
        "performed_at": session.performed_at.isoformat(),
        "technique": session.technique,
        "sites": list(session.sites),
        "ozone_concentration_ug_ml": session.ozone_concentration_ug_ml,
        "volume_ml": session.volume_ml,
        "injection_points": session.injection_points,
        "pain_before": session.pain_before,
        "pain_after": session.pain_after,
    }
    if session.adverse_events:
        body["adverse_events"] = list(session.adverse_events)
    return body


def _observation_body(
    observation: PlannedObservation, course_id: str, session_ids: Sequence[str]
) -> dict[str, Any]:
    value: float | int = observation.value
    if BY_CODE[observation.instrument].integer:
        value = int(observation.value)  # 7, not 7.0, for an integer scale
    body: dict[str, Any] = {
        "id": str(observation.id),
        "instrument": observation.instrument,
        "value": value,
        "recorded_at": observation.recorded_at.isoformat(),
        "course_id": course_id,
        "source": observation.source,
    }
    if observation.context is not None:
        body["context"] = observation.context
    if observation.session_index is not None:
        body["session_id"] = session_ids[observation.session_index]
    return body


async def _post_session(client: httpx.AsyncClient, course_id: str, session: PlannedSession) -> str:
    path = f"{API}/courses/{course_id}/sessions"
    created = await _call(client, "POST", path, 201, _session_body(session))
    return str(created["id"])


async def _post_observations(
    client: httpx.AsyncClient, patient_id: str, bodies: Sequence[dict[str, Any]]
) -> None:
    path = f"{API}/patients/{patient_id}/observations/batch"
    for first in range(0, len(bodies), BATCH_LIMIT):
        chunk = list(bodies[first : first + BATCH_LIMIT])
        answer = await _call(client, "POST", path, 200, {"observations": chunk})
        refused = [r for r in answer["results"] if r["status"] != "created"]
        if refused:
            raise DemoError(f"POST {path}: item {refused[0]['index']} was {refused[0]}")


async def write_patient(
    client: httpx.AsyncClient, planned: PlannedPatient, *, confirm: bool = True
) -> CourseOutcome:
    """Post one patient's data in time order, then act on the policy as a clinician would:
    apply a change recommended in a confirm course, unless ``confirm`` is false (the change is
    then left for a clinician, and the outcome names the patient as ``pending``)."""
    patient = await _call(
        client,
        "POST",
        f"{API}/patients",
        201,
        {
            "external_id": planned.external_id,
            "name": planned.name,
            "birth_date": planned.birth_date.isoformat(),
            "sex": planned.sex,
            "condition": planned.condition,
        },
    )
    patient_id = str(patient["id"])
    course_plan = planned.course
    course_body: dict[str, Any] = {
        "indication": course_plan.indication,
        "region": course_plan.region,
        "technique": course_plan.technique,
        "start_date": course_plan.start_date.isoformat(),
        "sessions_per_week": 3,
        "adjustment": course_plan.adjustment,
    }
    if course_plan.max_sessions is not None:
        course_body["max_sessions"] = course_plan.max_sessions
    course = await _call(client, "POST", f"{API}/patients/{patient_id}/courses", 201, course_body)
    course_id = str(course["id"])

    # Each post runs the course's policy once: an auto course steps down as its scores improve.
    session_ids: list[str] = []
    for step in timeline(course_plan):
        if step.session_index is not None:
            session = course_plan.sessions[step.session_index]
            session_ids.append(await _post_session(client, course_id, session))
        else:
            bodies = [_observation_body(o, course_id, session_ids) for o in step.observations]
            await _post_observations(client, patient_id, bodies)

    rec = await _call(client, "GET", f"{API}/courses/{course_id}/recommendation", 200)
    # A confirm course changes only when a clinician says so: the demo's clinician agrees.
    change_asked = course_plan.adjustment == "confirm" and rec["action"] in ("decrease", "increase")
    confirmed = change_asked and confirm
    if confirmed:
        change = {
            "sessions_per_week": rec["recommended_sessions_per_week"],
            "reason": f"confirmed policy recommendation ({rec['rule']})",
        }
        await _call(client, "POST", f"{API}/courses/{course_id}/frequency", 200, change)
    history = await _call(client, "GET", f"{API}/courses/{course_id}/frequency-history", 200)
    if course_plan.reached_max_sessions:
        closing = {"status": "completed", "notes": f"{course_plan.max_sessions} sessions done"}
        await _call(client, "PATCH", f"{API}/courses/{course_id}", 200, closing)
    return CourseOutcome(
        policy_rules=tuple(str(r["rule"]) for r in history["items"] if r["source"] == "policy"),
        rule=str(rec["rule"]),
        action=str(rec["action"]),
        confirmed=confirmed,
        pending=planned.external_id if change_asked and not confirmed else None,
    )


async def _already_loaded(client: httpx.AsyncClient, external_id: str) -> bool:
    page = await _call(client, "GET", f"{API}/patients", 200, params={"external_id": external_id})
    return bool(page["items"])


async def load_cohort(settings: Settings, plan: Sequence[PlannedPatient]) -> DemoSummary | None:
    """Post ``plan`` through the API; None when the demo cohort is already there."""
    # Imported here: the app imports every domain, which the pure plan does not need.
    from app.main import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        # The demo acts as a clinician, with a token of its own that it revokes when done.
        async with app_state(app).sessionmaker() as session, session.begin():
            issued = await TokenService(session).issue("clinician", expires_in_days=1)
        # A server error comes back as a 500 response (and the app's own error log), so the
        # demo stops with the request that failed rather than a traceback from inside the app.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        headers = {"Authorization": f"Bearer {issued.token}"}
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://demo", headers=headers
            ) as client:
                if plan and await _already_loaded(client, plan[0].external_id):
                    return None
                outcomes: list[CourseOutcome] = []
                for planned in plan:
                    # The demo's clinician confirms every other change asked for in a confirm
                    # course (the first, the third, ...): the others wait for a clinician, so
                    # the dashboard has one to confirm (docs/dashboard.md).
                    asked = sum(1 for o in outcomes if o.confirmed or o.pending is not None)
                    outcomes.append(await write_patient(client, planned, confirm=asked % 2 == 0))
                cohort = await _call(client, "GET", f"{API}/cohort/summary", 200)
        finally:
            async with app_state(app).sessionmaker() as session, session.begin():
                await TokenService(session).revoke(issued.row.id)
    return summarise(plan, outcomes, cohort)


def run_demo(settings: Settings, *, patients: int, seed: int, today: date) -> int:
    """``outcomes demo``: migrate, then load the cohort and print what was written."""
    upgrade(settings.database_url)
    plan = build_plan(patients, seed, today)
    # A log line per demo request (the app's access log, httpx's) would bury the summary.
    quiet = [logging.getLogger(name) for name in ("app.access", "httpx")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    try:
        summary = asyncio.run(load_cohort(settings, plan))
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    if summary is None:
        print(f"the demo cohort is already loaded ({plan[0].external_id} exists): nothing written")
        return 0
    for line in summary.lines():
        print(line)
    return 0
