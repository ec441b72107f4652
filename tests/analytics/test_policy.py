"""The `standard-v1` frequency policy, a pure function (docs/analytics.md, "The frequency policy").

Every case builds a course's state and its primary trend by hand and calls ``evaluate`` with a
fixed ``now``: no database, no clock.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.analytics.policy import CourseState, PolicyParams, Recommendation, evaluate
from app.analytics.registry import BUILT_IN, PolicyFileError, load_policies, registry
from app.analytics.repository import CourseFacts, PolicyCourse
from app.analytics.service import analysis, verdict
from app.analytics.trends import InstrumentTrend, Point, Thresholds, instrument_trend
from app.observations.catalogue import BY_CODE

STANDARD = registry()["standard-v1"]
START = date(2026, 3, 2)
START_MIDNIGHT = datetime(2026, 3, 2, tzinfo=UTC)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # the first session
NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)  # 30.5 days after the start date's midnight
SEVEN_DAYS = timedelta(days=7)
ONE_SECOND = timedelta(seconds=1)

COURSE = CourseState(
    status="active",
    adjustment="auto",
    sessions_per_week=3,
    sessions_done=4,
    max_sessions=None,
    start_date=START,
    last_change_source="initial",
    last_change_at=START_MIDNIGHT + timedelta(hours=8),
)


def course(**changes: Any) -> CourseState:
    return replace(COURSE, **changes)


def trend(
    baseline: float,
    *after: float,
    code: str = "pain-nrs",
    params: PolicyParams = STANDARD,
) -> InstrumentTrend:
    """One baseline value the day before the first session, then ``after`` every other day
    from an hour after it."""
    points = [Point(T0 - timedelta(days=1), baseline)]
    points += [Point(T0 + timedelta(days=2 * i, hours=1), v) for i, v in enumerate(after)]
    return instrument_trend(
        BY_CODE[code],
        points,
        start_date=START,
        first_session_at=T0,
        now=NOW,
        thresholds=params.thresholds,
    )


# pain-nrs (MCID 2 points, remission ≤ 2); each trend's status is asserted where it is defined.
RESPONDER = trend(8, 5, 4, 4, 4)  # 8 → 4: 4 points, 50%
REMISSION = trend(8, 4, 2, 2, 1)  # 8 → 2: 6 points, 75%
PARTIAL = trend(10, 7, 6, 6, 6)  # 10 → 6: 4 points, 40%
NON_RESPONDER = trend(6, 6, 5, 5, 5)  # 6 → 5: 1 point
WORSENING = trend(4, 6, 7, 7, 7)  # 4 → 7: −3 points
TWO_VALUES = trend(8, 5)


def decide(
    state: CourseState,
    primary: InstrumentTrend | None,
    *,
    params: PolicyParams = STANDARD,
    now: datetime = NOW,
) -> Recommendation:
    instrument = BY_CODE[primary.instrument] if primary is not None else None
    return evaluate(params, state, primary, instrument, now)


def test_the_example_trends_have_the_statuses_the_cases_rely_on() -> None:
    assert RESPONDER.status == "responder"
    assert (RESPONDER.baseline, RESPONDER.current, RESPONDER.improvement_pct) == (8, 4, 50)
    assert REMISSION.status == "responder"
    assert REMISSION.current == 2
    assert PARTIAL.status == "partial-responder"
    assert NON_RESPONDER.status == "non-responder"
    assert WORSENING.status == "worsening"
    assert TWO_VALUES.status == "insufficient-data"


def test_standard_v1_is_the_documented_parameter_set() -> None:
    assert STANDARD.id == "standard-v1"
    assert STANDARD.frequencies == (3, 2, 1)
    assert (STANDARD.responder_pct, STANDARD.partial_pct) == (50, 30)
    assert STANDARD.window_days_before_start == 14
    assert STANDARD.current_of_last == 3
    assert STANDARD.min_days_between_changes == 7
    assert STANDARD.clinician_hold_days == 7
    assert STANDARD.worsening_frequency == 3
    assert (STANDARD.induction_frequency, STANDARD.induction_step_to) == (3, 2)
    assert STANDARD.induction_min_sessions == 6
    assert STANDARD.non_response_min_sessions == 8


# --- each rule fires ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["paused", "completed", "discontinued"])
def test_inactive_course_keeps_its_frequency(status: str) -> None:
    rec = decide(course(status=status), RESPONDER)
    assert (rec.rule, rec.action) == ("inactive", "keep")
    assert rec.recommended_sessions_per_week == 3
    assert rec.current_sessions_per_week == 3
    assert not rec.apply
    assert status in rec.rationale
    assert rec.policy_version == "standard-v1"


def test_adverse_event_at_the_latest_session_asks_for_review() -> None:
    rec = decide(course(latest_session_adverse_events=("vasovagal reaction",)), RESPONDER)
    assert (rec.rule, rec.action) == ("adverse-event", "review")
    assert rec.recommended_sessions_per_week == 3
    assert rec.phase == "induction"
    assert not rec.apply
    assert "vasovagal reaction" in rec.rationale
    assert "3 a week" in rec.rationale
    assert rec.evidence["latest_session_adverse_events"] == ["vasovagal reaction"]


def test_insufficient_data_keeps_the_frequency() -> None:
    rec = decide(course(), TWO_VALUES)
    assert (rec.rule, rec.action) == ("insufficient-data", "keep")
    assert rec.recommended_sessions_per_week == 3
    assert not rec.apply
    assert "2 value(s) of pain-nrs" in rec.rationale
    assert rec.evidence["status"] == "insufficient-data"
    assert rec.evidence["n"] == 2


def test_no_values_at_all_is_insufficient_data() -> None:
    rec = decide(course(), None)
    assert (rec.rule, rec.action) == ("insufficient-data", "keep")
    assert "0 value(s) of any instrument" in rec.rationale
    assert rec.evidence["primary_instrument"] is None
    assert "status" not in rec.evidence


def test_worsening_at_three_a_week_asks_for_review() -> None:
    rec = decide(course(), WORSENING)
    assert (rec.rule, rec.action) == ("worsening", "review")
    assert rec.recommended_sessions_per_week == 3
    assert not rec.apply
    assert "pain-nrs worsened from 4 at baseline to 7 now (3 points" in rec.rationale
    assert "MCID 2 points" in rec.rationale
    assert "already at 3 a week" in rec.rationale


@pytest.mark.parametrize(("current", "phase"), [(2, "consolidation"), (1, "maintenance")])
def test_worsening_after_a_step_down_returns_to_three_a_week(current: float, phase: str) -> None:
    rec = decide(course(sessions_per_week=current, last_change_source="policy"), WORSENING)
    assert (rec.rule, rec.action) == ("worsening", "increase")
    assert rec.current_sessions_per_week == current
    assert rec.recommended_sessions_per_week == 3
    assert rec.phase == "induction"
    assert rec.apply
    assert f"from {current} to 3 sessions a week" in rec.rationale
    assert "-75%" in rec.rationale  # 3 points of a baseline 4 points from best


def test_max_sessions_reached_recommends_completion() -> None:
    rec = decide(course(sessions_done=8, max_sessions=8), NON_RESPONDER)
    assert (rec.rule, rec.action) == ("max-sessions", "complete")
    assert rec.recommended_sessions_per_week == 0
    assert rec.phase == "induction"  # the course's phase: nothing changes
    assert not rec.apply
    assert "8 sessions done of the 8 prescribed" in rec.rationale


def test_one_session_short_of_max_sessions_does_not_complete() -> None:
    rec = decide(course(sessions_done=7, max_sessions=8), NON_RESPONDER)
    assert rec.rule == "keep"


def test_remission_recommends_completion() -> None:
    rec = decide(course(), REMISSION)
    assert (rec.rule, rec.action) == ("remission", "complete")
    assert rec.recommended_sessions_per_week == 0
    assert not rec.apply
    assert "from 8 at baseline to 2 now (6 points, 75%" in rec.rationale
    assert "≤ 2" in rec.rationale


def test_remission_where_higher_is_better() -> None:
    # lumbar flexion: best 60°, remission ≥ 55°, MCID 13°
    rec = decide(course(), trend(30, 50, 56, 57, 55, code="rom-lumbar-flexion"))
    assert (rec.rule, rec.action) == ("remission", "complete")
    assert "≥ 55" in rec.rationale


def test_responder_steps_down_from_three_to_two() -> None:
    rec = decide(course(), RESPONDER)
    assert (rec.rule, rec.action) == ("response-step-down", "decrease")
    assert rec.current_sessions_per_week == 3
    assert rec.recommended_sessions_per_week == 2
    assert rec.phase == "consolidation"
    assert rec.apply
    assert "from 8 at baseline to 4 now (4 points, 50%; MCID 2 points)" in rec.rationale
    assert "30.5 days since the last frequency change" in rec.rationale
    assert "from 3 to 2 a week" in rec.rationale
    assert rec.evidence["days_since_last_change"] == 30.5
    assert rec.evidence["baseline"] == 8
    assert rec.evidence["current"] == 4
    assert rec.evidence["improvement_pct"] == 50


def test_partial_responder_after_induction_goes_to_two_a_week() -> None:
    rec = decide(course(sessions_done=6), PARTIAL)
    assert (rec.rule, rec.action) == ("induction-complete", "decrease")
    assert rec.recommended_sessions_per_week == 2
    assert rec.phase == "consolidation"
    assert rec.apply
    assert "from 10 at baseline to 6 now (4 points, 40%" in rec.rationale
    assert "after 6 sessions (induction is 6)" in rec.rationale


@pytest.mark.parametrize(
    ("sessions_per_week", "sessions_done"),
    [(3, 5), (2, 6), (2, 12)],  # induction not finished; already below induction frequency
)
def test_induction_complete_needs_six_sessions_at_three_a_week(
    sessions_per_week: float, sessions_done: int
) -> None:
    rec = decide(course(sessions_per_week=sessions_per_week, sessions_done=sessions_done), PARTIAL)
    assert rec.rule == "keep"
    assert rec.recommended_sessions_per_week == sessions_per_week


def test_non_responder_after_eight_sessions_asks_for_review() -> None:
    rec = decide(course(sessions_done=8), NON_RESPONDER)
    assert (rec.rule, rec.action) == ("non-response", "review")
    assert rec.recommended_sessions_per_week == 3
    assert not rec.apply
    assert "after 8 sessions (review from 8)" in rec.rationale
    assert "from 6 at baseline to 5 now (1 points" in rec.rationale


def test_non_responder_after_seven_sessions_keeps_going() -> None:
    rec = decide(course(sessions_done=7), NON_RESPONDER)
    assert (rec.rule, rec.action) == ("keep", "keep")


def test_otherwise_keep() -> None:
    rec = decide(course(), PARTIAL)
    assert (rec.rule, rec.action) == ("keep", "keep")
    assert rec.recommended_sessions_per_week == 3
    assert not rec.apply
    assert "from 10 at baseline to 6 now" in rec.rationale
    assert "partial-responder: keep 3 sessions a week" in rec.rationale


def test_evidence_describes_the_course_and_the_primary_trend() -> None:
    rec = decide(course(sessions_done=5, max_sessions=10), PARTIAL)
    assert rec.evidence == rec.evidence | {
        "course_status": "active",
        "adjustment": "auto",
        "sessions_done": 5,
        "max_sessions": 10,
        "last_change_source": "initial",
        "days_since_last_change": 30.5,
        "latest_session_adverse_events": [],
        "primary_instrument": "pain-nrs",
        "status": "partial-responder",
        "n": 5,
        "baseline": 10,
        "current": 6,
        "improvement_abs": 4,
        "improvement_pct": 40,
        "mcid_abs": 2,
        "mcid_reached": True,
        "remission": 2,
    }
    assert rec.evidence["slope_per_week"] < 0
    assert 0 <= rec.evidence["mann_kendall_p"] <= 1


# --- each rule's rationale, word for word: one sentence, with its numbers ------------------------

STANDARD_V2 = registry()["standard-v2"]
# Three values, all after the first session: enough values, but no baseline.
NO_BASELINE = instrument_trend(
    BY_CODE["pain-nrs"],
    [Point(T0 + timedelta(days=2 * i, hours=1), v) for i, v in enumerate((7, 6, 5))],
    start_date=START,
    first_session_at=T0,
    now=NOW,
)


@pytest.mark.parametrize(
    ("state", "primary", "params", "rule", "rationale"),
    [
        (
            course(status="paused"),
            RESPONDER,
            STANDARD,
            "inactive",
            "The course is paused: no change.",
        ),
        (
            course(latest_session_adverse_events=("vasovagal reaction", "hematoma")),
            RESPONDER,
            STANDARD,
            "adverse-event",
            "The latest session recorded an adverse event (vasovagal reaction; hematoma): review "
            "before the next session; frequency stays at 3 a week.",
        ),
        (
            course(unacknowledged_adverse_events=("hematoma",)),
            RESPONDER,
            STANDARD_V2,
            "adverse-event",
            "A session recorded an adverse event (hematoma) that no clinician has acknowledged: "
            "review, and confirm the frequency (3 a week) with POST /courses/{id}/frequency.",
        ),
        (
            course(resumed_after_days=30.4),
            RESPONDER,
            STANDARD_V2,
            "resumed-after-pause",
            "The course was resumed after 30 days paused (review from 14): review the plan and "
            "confirm the frequency (3 a week).",
        ),
        (
            course(),
            TWO_VALUES,
            STANDARD,
            "insufficient-data",
            "Not enough data to judge the response (2 value(s) of pain-nrs in the course window, "
            "at least 3 needed with one after the first session): keep the frequency.",
        ),
        (
            course(),
            None,
            STANDARD,
            "insufficient-data",
            "Not enough data to judge the response (0 value(s) of any instrument in the course "
            "window, at least 3 needed with one after the first session): keep the frequency.",
        ),
        (  # exactly 3 values: the trend's own reason
            course(),
            NO_BASELINE,
            STANDARD,
            "insufficient-data",
            "Not enough data to judge the response (3 value(s) of pain-nrs, but no value before "
            "the first session: record a score before the next session's injection (or the "
            "session's pain_before) to have a baseline): keep the frequency.",
        ),
        (
            course(),
            trend(0, 1, 0, 1, 0),
            STANDARD_V2,
            "no-deficit",
            "pain-nrs was 0 at baseline, already at or past its healthy end (0): no deficit at "
            "baseline; check the indication.",
        ),
        (
            course(),
            WORSENING,
            STANDARD,
            "worsening",
            "pain-nrs worsened from 4 at baseline to 7 now (3 points, -75%; MCID 2 points): worse "
            "by at least the MCID while already at 3 a week; clinical review needed.",
        ),
        (
            course(sessions_per_week=2, last_change_source="policy"),
            WORSENING,
            STANDARD,
            "worsening",
            "pain-nrs worsened from 4 at baseline to 7 now (3 points, -75%; MCID 2 points): worse "
            "by at least the MCID, so the frequency goes back up from 2 to 3 sessions a week.",
        ),
        (
            course(sessions_done=8, max_sessions=8),
            NON_RESPONDER,
            STANDARD,
            "max-sessions",
            "8 sessions done of the 8 prescribed: the course can be completed.",
        ),
        (
            course(),
            REMISSION,
            STANDARD,
            "remission",
            "pain-nrs improved from 8 at baseline to 2 now (6 points, 75%; MCID 2 points): a "
            "responder, and 2 is within remission (≤ 2): the course can be completed.",
        ),
        (
            course(),
            RESPONDER,
            STANDARD,
            "response-step-down",
            "pain-nrs improved from 8 at baseline to 4 now (4 points, 50%; MCID 2 points): a "
            "responder, and 30.5 days since the last frequency change (at least 7), so sessions "
            "step down from 3 to 2 a week.",
        ),
        (
            course(sessions_done=6),
            PARTIAL,
            STANDARD,
            "induction-complete",
            "pain-nrs improved from 10 at baseline to 6 now (4 points, 40%; MCID 2 points): a "
            "partial responder after 6 sessions (induction is 6), so sessions go from 3 to 2 a "
            "week.",
        ),
        (
            course(
                sessions_done=6,
                last_change_source="clinician",
                last_change_at=NOW - SEVEN_DAYS + ONE_SECOND,
            ),
            PARTIAL,
            STANDARD,
            "induction-complete",
            "pain-nrs improved from 10 at baseline to 6 now (4 points, 40%; MCID 2 points): a "
            "partial responder after 6 sessions (induction is 6), so sessions go from 3 to 2 a "
            "week. Not applied: a clinician set 3 a week on 2026-03-25, which holds until "
            "2026-04-01.",
        ),
        (
            course(sessions_done=8),
            NON_RESPONDER,
            STANDARD,
            "non-response",
            "pain-nrs improved from 6 at baseline to 5 now (1 points, 16.7%; MCID 2 points): no "
            "clinically important response after 8 sessions (review from 8); review the "
            "indication and plan.",
        ),
        (
            course(),
            PARTIAL,
            STANDARD,
            "keep",
            "pain-nrs improved from 10 at baseline to 6 now (4 points, 40%; MCID 2 points); "
            "partial-responder: keep 3 sessions a week.",
        ),
    ],
    ids=[
        "inactive",
        "adverse-event-v1",
        "adverse-event-v2",
        "resumed-after-pause",
        "insufficient-data-too-few",
        "insufficient-data-no-values",
        "insufficient-data-no-baseline",
        "no-deficit",
        "worsening-review",
        "worsening-increase",
        "max-sessions",
        "remission",
        "response-step-down",
        "induction-complete",
        "induction-complete-held",
        "non-response",
        "keep",
    ],
)
def test_each_rule_s_rationale_word_for_word(
    state: CourseState,
    primary: InstrumentTrend | None,
    params: PolicyParams,
    rule: str,
    rationale: str,
) -> None:
    rec = decide(state, primary, params=params)
    assert (rec.rule, rec.rationale) == (rule, rationale)


# --- precedence: the first rule that fires decides -------------------------------------------


def test_inactive_beats_an_adverse_event() -> None:
    rec = decide(course(status="paused", latest_session_adverse_events=("hematoma",)), WORSENING)
    assert rec.rule == "inactive"


def test_adverse_event_beats_worsening() -> None:
    rec = decide(
        course(sessions_per_week=2, latest_session_adverse_events=("hematoma",)), WORSENING
    )
    assert (rec.rule, rec.action) == ("adverse-event", "review")
    assert rec.recommended_sessions_per_week == 2
    assert not rec.apply


def test_insufficient_data_beats_max_sessions() -> None:
    rec = decide(course(sessions_done=8, max_sessions=8), TWO_VALUES)
    assert rec.rule == "insufficient-data"


def test_worsening_beats_max_sessions() -> None:
    rec = decide(course(sessions_per_week=2, sessions_done=8, max_sessions=8), WORSENING)
    assert (rec.rule, rec.action) == ("worsening", "increase")


def test_max_sessions_beats_remission() -> None:
    rec = decide(course(sessions_done=10, max_sessions=10), REMISSION)
    assert rec.rule == "max-sessions"


def test_remission_beats_step_down() -> None:
    rec = decide(course(sessions_done=6), REMISSION)
    assert rec.rule == "remission"


def test_max_sessions_beats_non_response() -> None:
    rec = decide(course(sessions_done=8, max_sessions=8), NON_RESPONDER)
    assert rec.rule == "max-sessions"


# --- stepping down ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "lower", "phase"), [(3, 2, "consolidation"), (2, 1, "maintenance")]
)
def test_step_down_goes_one_step(current: float, lower: float, phase: str) -> None:
    rec = decide(course(sessions_per_week=current), RESPONDER)
    assert (rec.rule, rec.action) == ("response-step-down", "decrease")
    assert rec.recommended_sessions_per_week == lower
    assert rec.phase == phase
    assert rec.apply


def test_responder_at_one_a_week_keeps_it() -> None:
    rec = decide(course(sessions_per_week=1, sessions_done=10), RESPONDER)
    assert (rec.rule, rec.action) == ("keep", "keep")
    assert rec.recommended_sessions_per_week == 1
    assert rec.phase == "maintenance"
    assert not rec.apply


@pytest.mark.parametrize("source", ["policy", "clinician"])
def test_no_step_down_seven_days_minus_one_second_after_a_change(source: str) -> None:
    state = course(
        sessions_per_week=2, last_change_source=source, last_change_at=NOW - SEVEN_DAYS + ONE_SECOND
    )
    rec = decide(state, RESPONDER)
    assert (rec.rule, rec.action) == ("keep", "keep")
    assert rec.recommended_sessions_per_week == 2
    assert not rec.apply


@pytest.mark.parametrize("source", ["policy", "clinician"])
def test_step_down_exactly_seven_days_after_a_change(source: str) -> None:
    state = course(sessions_per_week=2, last_change_source=source, last_change_at=NOW - SEVEN_DAYS)
    rec = decide(state, RESPONDER)
    assert (rec.rule, rec.action) == ("response-step-down", "decrease")
    assert rec.recommended_sessions_per_week == 1
    assert rec.apply
    assert "7 days since the last frequency change" in rec.rationale
    assert "clinician_hold_until" not in rec.evidence


def test_the_initial_frequency_counts_from_the_start_date_not_from_its_row() -> None:
    # The initial row was written just now, but the course started 30.5 days ago.
    state = course(last_change_source="initial", last_change_at=NOW - timedelta(minutes=1))
    assert decide(state, RESPONDER).rule == "response-step-down"
    # A course that started 6 days ago has not had its first 7 days yet.
    young = course(start_date=(NOW - timedelta(days=6)).date(), last_change_at=NOW)
    assert decide(young, RESPONDER).rule == "keep"
    # From the start date's midnight (UTC): exactly 7 days is enough.
    seven = course(start_date=date(2026, 3, 25), last_change_at=NOW)
    assert decide(seven, RESPONDER, now=datetime(2026, 4, 1, tzinfo=UTC)).rule == (
        "response-step-down"
    )
    assert decide(seven, RESPONDER, now=datetime(2026, 4, 1, tzinfo=UTC) - ONE_SECOND).rule == (
        "keep"
    )


# --- a clinician's change holds against the policy for 7 days --------------------------------


def test_clinician_change_holds_six_days_23_59_59_later() -> None:
    set_at = NOW - timedelta(days=6, hours=23, minutes=59, seconds=59)
    state = course(sessions_done=6, last_change_source="clinician", last_change_at=set_at)
    rec = decide(state, PARTIAL)
    # The rule still says what it would do, but it is not applied.
    assert (rec.rule, rec.action) == ("induction-complete", "decrease")
    assert rec.recommended_sessions_per_week == 2
    assert not rec.apply
    assert rec.evidence["clinician_hold_until"] == (set_at + SEVEN_DAYS).isoformat()
    assert "Not applied: a clinician set 3 a week on 2026-03-25" in rec.rationale
    assert "holds until 2026-04-01" in rec.rationale


def test_clinician_hold_ends_after_seven_days() -> None:
    state = course(sessions_done=6, last_change_source="clinician", last_change_at=NOW - SEVEN_DAYS)
    rec = decide(state, PARTIAL)
    assert (rec.rule, rec.action) == ("induction-complete", "decrease")
    assert rec.apply
    assert "clinician_hold_until" not in rec.evidence
    assert "Not applied" not in rec.rationale


def test_clinician_hold_also_holds_an_increase() -> None:
    state = course(
        sessions_per_week=2, last_change_source="clinician", last_change_at=NOW - timedelta(days=2)
    )
    rec = decide(state, WORSENING)
    assert (rec.rule, rec.action) == ("worsening", "increase")
    assert not rec.apply
    assert "clinician_hold_until" in rec.evidence


def test_clinician_hold_only_concerns_changes() -> None:
    state = course(last_change_source="clinician", last_change_at=NOW - timedelta(days=1))
    rec = decide(state, REMISSION)
    assert (rec.rule, rec.action) == ("remission", "complete")
    assert "clinician_hold_until" not in rec.evidence


def test_a_policy_change_does_not_hold_like_a_clinician_change() -> None:
    state = course(
        sessions_per_week=2, last_change_source="policy", last_change_at=NOW - timedelta(hours=1)
    )
    rec = decide(state, WORSENING)
    assert rec.apply
    assert "clinician_hold_until" not in rec.evidence


# --- confirm courses never change by themselves ----------------------------------------------


@pytest.mark.parametrize(
    ("state", "primary", "action"),
    [
        (course(adjustment="confirm"), RESPONDER, "decrease"),
        (course(adjustment="confirm", sessions_done=6), PARTIAL, "decrease"),
        (course(adjustment="confirm", sessions_per_week=2), WORSENING, "increase"),
    ],
)
def test_confirm_course_recommends_but_does_not_apply(
    state: CourseState, primary: InstrumentTrend, action: str
) -> None:
    rec = decide(state, primary)
    assert rec.action == action
    assert not rec.apply
    assert rec.evidence["adjustment"] == "confirm"


# --- policies are validated data -------------------------------------------------------------


def standard_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = json.loads((BUILT_IN / "standard-v1.json").read_text())
    return fields | changes


def test_frequencies_are_kept_from_highest_to_lowest() -> None:
    params = PolicyParams.model_validate(standard_fields(frequencies=[1, 3, 2]))
    assert params.frequencies == (3, 2, 1)
    assert params.step_down(3) == 2
    assert params.step_down(2) == 1
    assert params.step_down(1) is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"frequencies": [3, 8, 1]}, "less than or equal to 7"),
        ({"frequencies": [3, 0, 1]}, "greater than or equal to 1"),
        ({"frequencies": [3, -1]}, "greater than or equal to 1"),
        ({"frequencies": [3, 2.5, 1]}, "must be a whole number of sessions a week"),
        ({"frequencies": [3, 2, 2, 1]}, "frequencies must be distinct"),
        ({"frequencies": []}, "at least 1 item"),
        ({"worsening_frequency": 4}, "worsening_frequency must be one of the allowed"),
        ({"induction_frequency": 5}, "induction_frequency must be one of the allowed"),
        ({"induction_step_to": 1.5}, "must be a whole number of sessions a week"),
        ({"induction_step_to": 3}, "induction_step_to must be below induction_frequency"),
        (
            {"induction_frequency": 2, "induction_step_to": 3},
            "induction_step_to must be below induction_frequency",
        ),
        ({"partial_pct": 60}, "partial_pct must not exceed responder_pct"),
        ({"responder_pct": 0}, "greater than 0"),
        ({"responder_pct": 101}, "less than or equal to 100"),
        ({"min_days_between_changes": -1}, "greater than or equal to 0"),
        ({"id": "Standard V1"}, "should match pattern"),
        ({"description": ""}, "at least 1 character"),
        ({"taper_after": 3}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_policy_parameters_are_rejected(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PolicyParams.model_validate(standard_fields(**changes))


# docs/analytics.md, "A clinic's own policy": the allowed range of each whole-number field.
@pytest.mark.parametrize(
    ("name", "lowest", "highest"),
    [
        ("window_days_before_start", 0, 90),  # 0: values count from the start date only
        ("current_of_last", 1, 10),
        ("min_days_between_changes", 0, 90),
        ("clinician_hold_days", 0, 90),
        ("induction_min_sessions", 1, 100),
        ("non_response_min_sessions", 1, 200),
        ("resume_review_days", 1, 365),
    ],
)
def test_a_parameter_takes_both_ends_of_its_range_and_nothing_past_them(
    name: str, lowest: int, highest: int
) -> None:
    for value in (lowest, highest):
        params = PolicyParams.model_validate(standard_fields(**{name: value}))
        assert getattr(params, name) == value
    for value in (lowest - 1, highest + 1):
        with pytest.raises(ValidationError, match=name):
            PolicyParams.model_validate(standard_fields(**{name: value}))


def test_a_missing_parameter_is_rejected() -> None:
    fields = standard_fields()
    del fields["clinician_hold_days"]
    with pytest.raises(ValidationError, match="clinician_hold_days"):
        PolicyParams.model_validate(fields)


def test_partial_pct_equal_to_responder_pct_is_allowed() -> None:
    params = PolicyParams.model_validate(standard_fields(partial_pct=50))
    assert params.partial_pct == params.responder_pct == 50


def test_thresholds_are_the_policy_s_own() -> None:
    assert STANDARD.thresholds == Thresholds(
        responder_pct=50, partial_pct=30, window_days_before_start=14, current_of_last=3
    )
    other = PolicyParams.model_validate(
        standard_fields(responder_pct=40, window_days_before_start=7, current_of_last=2)
    )
    assert other.thresholds == Thresholds(
        responder_pct=40, partial_pct=30, window_days_before_start=7, current_of_last=2
    )
    assert STANDARD.thresholds.responder_pct == 50  # kept apart from the other policy's


def test_rationale_numbers_are_formatted_the_same_every_time() -> None:
    """Whole numbers without decimals, others to one; ints and floats alike (cached)."""
    for _ in range(2):
        rec = decide(course(sessions_per_week=2.5, last_change_source="policy"), WORSENING)
        assert "from 2.5 to 3 sessions a week" in rec.rationale
        rec = decide(course(sessions_per_week=3.0), RESPONDER)
        assert "from 3 to 2 a week" in rec.rationale


@pytest.mark.parametrize(
    ("primary", "change"),
    [
        (trend(60, 45, 40, 40, 40, code="pain-vas"), "(20 mm, 33.3%; MCID 15 mm)"),
        # ODI is a percentage of the scale: its changes are points, not percent.
        (trend(40, 30, 28, 28, 28, code="odi"), "(12 points, 30%; MCID 10 points)"),
        (trend(30, 20, 18, 18, 18, code="finger-floor"), "(12 cm, 40%; MCID 10 cm)"),
        (trend(30, 40, 44, 45, 44, code="rom-lumbar-flexion"), "(14 °, 46.7%; MCID 13 °)"),
    ],
)
def test_rationale_gives_a_change_in_its_measure_s_unit(
    primary: InstrumentTrend, change: str
) -> None:
    rec = decide(course(), primary)
    assert (rec.rule, rec.evidence["status"]) == ("keep", "partial-responder")
    assert change in rec.rationale


def test_an_unchanged_score_is_not_called_worse() -> None:
    rec = decide(course(), trend(6, 6, 6, 6, 6))
    assert (rec.rule, rec.evidence["improvement_abs"]) == ("keep", 0)
    assert "from 6 at baseline to 6 now (0 points, 0%; MCID 2 points)" in rec.rationale
    assert "worsened" not in rec.rationale


def test_policy_params_are_immutable() -> None:
    with pytest.raises(ValidationError):
        STANDARD.responder_pct = 40  # type: ignore[misc]


def write(folder: Path, name: str, content: str | dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_load_policies_reads_every_folder(tmp_path: Path) -> None:
    write(tmp_path / "clinic", "clinic-v2.json", standard_fields(id="clinic-v2"))
    loaded = load_policies([BUILT_IN, tmp_path / "clinic"])
    assert set(loaded) == {"standard-v1", "standard-v2", "clinic-v2"}
    assert loaded["standard-v1"] == STANDARD


def test_load_policies_rejects_a_file_that_is_not_json(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.json", '{"id": "broken",')
    with pytest.raises(PolicyFileError, match="not a valid policy") as info:
        load_policies([tmp_path])
    assert str(path) in str(info.value)


def test_load_policies_rejects_invalid_parameters(tmp_path: Path) -> None:
    write(tmp_path, "loose-v1.json", standard_fields(id="loose-v1", partial_pct=70))
    with pytest.raises(PolicyFileError, match="partial_pct must not exceed responder_pct"):
        load_policies([tmp_path])


def test_load_policies_rejects_a_file_not_named_after_its_id(tmp_path: Path) -> None:
    write(tmp_path, "gentle.json", standard_fields(id="gentle-v1"))
    with pytest.raises(PolicyFileError, match=r"must be named after its id \(gentle-v1.json\)"):
        load_policies([tmp_path])


def test_load_policies_rejects_a_duplicate_id(tmp_path: Path) -> None:
    write(tmp_path / "a", "clinic-v1.json", standard_fields(id="clinic-v1"))
    write(tmp_path / "b", "clinic-v1.json", standard_fields(id="clinic-v1", responder_pct=60))
    with pytest.raises(PolicyFileError, match="policy clinic-v1 is defined twice"):
        load_policies([tmp_path / "a", tmp_path / "b"])


def test_a_clinic_cannot_redefine_a_built_in_policy(tmp_path: Path) -> None:
    write(tmp_path, "standard-v1.json", standard_fields(responder_pct=40))
    with pytest.raises(PolicyFileError, match="defined twice"):
        load_policies([BUILT_IN, tmp_path])


def test_files_other_than_json_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "README.md", "not a policy")
    assert load_policies([tmp_path]) == {}


# --- policies are data: the same facts under another policy ----------------------------------

CUSTOM = PolicyParams.model_validate(
    standard_fields(
        id="brisk-v1",
        description="Responders from 40%; four sessions a week in induction.",
        responder_pct=40,
        frequencies=[4, 2, 1],
        worsening_frequency=4,
        induction_frequency=4,
        induction_step_to=2,
    )
)


def test_a_custom_policy_changes_the_outcome() -> None:
    state = course(sessions_per_week=4)
    standard = decide(state, trend(10, 7, 6, 6, 6))
    assert standard.rule == "keep"  # 40% is a partial response under standard-v1
    custom = decide(state, trend(10, 7, 6, 6, 6, params=CUSTOM), params=CUSTOM)
    assert custom.evidence["status"] == "responder"
    assert (custom.rule, custom.action) == ("response-step-down", "decrease")
    assert custom.recommended_sessions_per_week == 2  # the next allowed frequency below 4
    assert custom.phase == "consolidation"
    assert custom.policy_version == "brisk-v1"


def test_a_custom_policy_has_its_own_worsening_frequency() -> None:
    state = course(sessions_per_week=2, last_change_source="policy")
    rec = decide(state, trend(4, 6, 7, 7, 7, params=CUSTOM), params=CUSTOM)
    assert (rec.rule, rec.action) == ("worsening", "increase")
    assert rec.recommended_sessions_per_week == 4
    assert "from 2 to 4 sessions a week" in rec.rationale
    # standard-v1 at 3 a week would only review; this policy goes up to 4.
    at_three = decide(course(sessions_per_week=3, last_change_source="policy"), WORSENING)
    assert at_three.action == "review"
    assert decide(course(sessions_per_week=3), WORSENING, params=CUSTOM).action == "increase"


def test_a_custom_policy_has_its_own_induction() -> None:
    rec = decide(
        course(sessions_per_week=4, sessions_done=6),
        trend(10, 8, 7, 7, 7, params=CUSTOM),
        params=CUSTOM,
    )
    assert rec.evidence["status"] == "partial-responder"  # 30%, 3 points
    assert (rec.rule, rec.recommended_sessions_per_week) == ("induction-complete", 2)


# --- The write path's verdict ------------------------------------------------------------------


@st.composite
def _recorded(draw: st.DrawFn) -> tuple[PolicyCourse, CourseFacts, dict[str, list[Point]]]:
    """A course (any status, frequency, sessions) with facts, and values of any instruments
    before, inside and after its window."""
    start = date(2026, 3, 2)
    course = PolicyCourse(
        id=uuid.uuid4(),
        patient_id=uuid.uuid4(),
        start_date=start,
        policy="standard-v1",
        status=draw(st.sampled_from(["active", "active", "paused"])),
        adjustment=draw(st.sampled_from(["auto", "confirm"])),
        sessions_per_week=draw(st.sampled_from([3.0, 2.0, 1.0])),
        sessions_done=draw(st.integers(0, 30)),
        max_sessions=draw(st.none() | st.integers(5, 40)),
        region="lumbar",
        paused_at=None,
        resumed_at=None,
        ended_at=None,
    )
    first_session = draw(st.none() | st.integers(0, 10))
    facts = CourseFacts(
        last_change_source=draw(st.sampled_from(["initial", "policy", "clinician"])),
        last_change_at=T0 + timedelta(days=draw(st.integers(-5, 25))),
        first_session_at=None if first_session is None else T0 + timedelta(days=first_session),
        latest_adverse_events=tuple(draw(st.lists(st.sampled_from(["syncope"]), max_size=1))),
    )
    points: dict[str, list[Point]] = {}
    for code in draw(st.lists(st.sampled_from(["odi", "pain-nrs", "pain-vas"]), unique=True)):
        high = BY_CODE[code].max
        days = draw(st.lists(st.integers(-25, 35), max_size=25))
        points[code] = sorted(
            (Point(T0 + timedelta(days=d), float(draw(st.integers(0, int(high))))) for d in days),
            key=lambda p: p.recorded_at,
        )
    return course, facts, points


@given(_recorded())
@settings(max_examples=300, deadline=None)
def test_the_write_paths_verdict_is_the_full_analysis_recommendation(
    case: tuple[PolicyCourse, CourseFacts, dict[str, list[Point]]],
) -> None:
    """Recording computes only the primary instrument's trend: the policy's say is the same."""
    course, facts, points = case
    now = T0 + timedelta(days=30)
    params = registry()["standard-v1"]
    assert verdict(course, facts, points, now, params) == (
        analysis(course, facts, points, now, params).recommendation
    )


def test_with_every_measure_normal_the_write_path_reads_the_first_as_the_analysis_does() -> None:
    """No pain and no disability at baseline, nor since: both measures are `normal`, so the
    primary one is the first in primary order (pain-nrs), on the write path as on a read."""
    course = PolicyCourse(
        id=uuid.uuid4(), patient_id=uuid.uuid4(), start_date=START, policy="standard-v2",
        status="active", adjustment="auto", sessions_per_week=3, sessions_done=4,
        max_sessions=None, region="lumbar", paused_at=None, resumed_at=None, ended_at=None,
    )  # fmt: skip
    facts = CourseFacts(
        last_change_source="initial",
        last_change_at=START_MIDNIGHT,
        first_session_at=T0,
        latest_adverse_events=(),
    )
    flat = [Point(T0 + timedelta(days=d), 0) for d in (-1, 1, 3, 5)]
    points = {"pain-nrs": flat, "odi": flat}
    params = registry()["standard-v2"]
    read = analysis(course, facts, points, NOW, params)
    assert {code: t.status for code, t in read.trends.items()} == {
        "pain-nrs": "normal",
        "odi": "normal",
    }
    assert read.primary == "pain-nrs"
    written = verdict(course, facts, points, NOW, params)
    assert (written.rule, written.evidence["primary_instrument"]) == ("no-deficit", "pain-nrs")
    assert written == read.recommendation
