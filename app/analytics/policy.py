"""Session-frequency policy: a pure function from a course's state and trend to a recommendation.

The rules and their order are docs/analytics.md's tables (`standard-v1`, `standard-v2`); the
numbers, and which of v2's rules apply, are a policy's parameters (``PolicyParams``), so a
clinic can run its own version without code changes. A parameter added in v2 defaults to v1's
behaviour: a policy file written for v1 still means what it meant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.analytics.trends import InstrumentTrend, Thresholds
from app.courses.frequency import SessionsPerWeek
from app.courses.schedule import phase_for
from app.observations.catalogue import Instrument

Action = Literal["keep", "decrease", "increase", "complete", "review"]


class PolicyParams(BaseModel):
    """A versioned, validated policy parameter set (see ``app/analytics/policies/``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,48}$", description="e.g. `standard-v1`")
    description: str = Field(min_length=1, max_length=2000)
    frequencies: tuple[SessionsPerWeek, ...] = Field(
        min_length=1, description="Allowed sessions a week; steps go from one to the next."
    )
    responder_pct: float = Field(gt=0, le=100)
    partial_pct: float = Field(gt=0, le=100)
    window_days_before_start: int = Field(ge=0, le=90)
    current_of_last: int = Field(ge=1, le=10)
    min_days_between_changes: int = Field(ge=0, le=90)
    clinician_hold_days: int = Field(ge=0, le=90)
    # Steps the policy takes: each one of the frequencies (checked below).
    worsening_frequency: SessionsPerWeek
    induction_frequency: SessionsPerWeek
    induction_min_sessions: int = Field(ge=1, le=100)
    induction_step_to: SessionsPerWeek
    non_response_min_sessions: int = Field(ge=1, le=200)
    # v2 (docs/analytics.md, "Policy standard-v2"); the defaults are v1's behaviour.
    adverse_events_until_acknowledged: bool = Field(
        False,
        description="Review while any session since the last clinician decision had an "
        "adverse event (v1: only the latest session's).",
    )
    resume_review_days: int | None = Field(
        None, ge=1, le=365, description="Review a course resumed after this many days paused."
    )
    review_no_deficit: bool = Field(
        False, description="Review a course whose primary measure had no deficit at baseline."
    )
    wait_before_every_decrease: bool = Field(
        False,
        description="`induction-complete` waits min_days_between_changes too (v1: only "
        "`response-step-down`).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> PolicyParams:
        if len(set(self.frequencies)) != len(self.frequencies):
            raise ValueError("frequencies must be distinct")
        object.__setattr__(self, "frequencies", tuple(sorted(self.frequencies, reverse=True)))
        for name in ("worsening_frequency", "induction_frequency", "induction_step_to"):
            if getattr(self, name) not in self.frequencies:
                raise ValueError(f"{name} must be one of the allowed frequencies")
        if self.induction_step_to >= self.induction_frequency:
            raise ValueError("induction_step_to must be below induction_frequency")
        if self.partial_pct > self.responder_pct:
            raise ValueError("partial_pct must not exceed responder_pct")
        return self

    @property
    def thresholds(self) -> Thresholds:
        return _thresholds(
            self.responder_pct,
            self.partial_pct,
            self.window_days_before_start,
            self.current_of_last,
        )

    def step_down(self, current: float) -> int | None:
        """The next allowed frequency below ``current`` (3 → 2 → 1), if any."""
        lower = [f for f in self.frequencies if f < current]
        return max(lower) if lower else None


# Asked for once per trend on the write path; a policy's few values give few distinct ones.
@lru_cache(maxsize=64, typed=True)
def _thresholds(
    responder_pct: float, partial_pct: float, window_days_before_start: int, current_of_last: int
) -> Thresholds:
    return Thresholds(
        responder_pct=responder_pct,
        partial_pct=partial_pct,
        window_days_before_start=window_days_before_start,
        current_of_last=current_of_last,
    )


@dataclass(frozen=True, slots=True)
class CourseState:
    status: str
    adjustment: str
    sessions_per_week: float
    sessions_done: int
    max_sessions: int | None
    start_date: date
    # The latest history row; the initial one counts from the course's start date.
    last_change_source: str
    last_change_at: datetime
    latest_session_adverse_events: tuple[str, ...] = ()
    # v2: the adverse events of the latest session that had any since the last clinician
    # decision; and, when the latest change is a resume, how long the course was paused.
    unacknowledged_adverse_events: tuple[str, ...] = ()
    resumed_after_days: float | None = None

    @property
    def last_change_effective(self) -> datetime:
        if self.last_change_source == "initial":
            return datetime.combine(self.start_date, time.min, tzinfo=UTC)
        return self.last_change_at


@dataclass(frozen=True, slots=True)
class Recommendation:
    rule: str
    action: Action
    current_sessions_per_week: float
    recommended_sessions_per_week: float
    phase: str
    rationale: str
    evidence: dict[str, Any]
    policy_version: str
    # True when an `auto` course should change frequency now (an increase or decrease that no
    # clinician decision holds back).
    apply: bool = False


@dataclass(slots=True)
class _Context:
    """One evaluation's inputs, with what several rules read worked out once."""

    params: PolicyParams
    course: CourseState
    trend: InstrumentTrend | None
    instrument: Instrument | None
    now: datetime
    status: str
    days_since_change: float
    evidence: dict[str, Any]


Rule = Callable[[_Context], Recommendation | None]


def evaluate(
    params: PolicyParams,
    course: CourseState,
    trend: InstrumentTrend | None,
    instrument: Instrument | None,
    now: datetime,
) -> Recommendation:
    """The first rule that fires decides."""
    days = (now - course.last_change_effective).total_seconds() / 86400.0
    status = trend.status if trend else "insufficient-data"
    evidence = _evidence(course, trend, instrument, days)
    ctx = _Context(params, course, trend, instrument, now, status, days, evidence)
    for rule in RULES:
        result = rule(ctx)
        if result is not None:
            return _hold_for_clinician(ctx, result)
    raise AssertionError("the `keep` rule always fires")  # pragma: no cover


def _evidence(
    course: CourseState,
    trend: InstrumentTrend | None,
    instrument: Instrument | None,
    days_since_change: float,
) -> dict[str, Any]:
    evidence: dict[str, Any] = {
        "course_status": course.status,
        "adjustment": course.adjustment,
        "sessions_done": course.sessions_done,
        "max_sessions": course.max_sessions,
        "last_change_source": course.last_change_source,
        "days_since_last_change": round(days_since_change, 2),
        "latest_session_adverse_events": list(course.latest_session_adverse_events),
        "unacknowledged_adverse_events": list(course.unacknowledged_adverse_events),
        "resumed_after_days": course.resumed_after_days,
        "primary_instrument": instrument.code if instrument else None,
    }
    if trend is not None and instrument is not None:
        evidence |= {
            "status": trend.status,
            "n": trend.n,
            "baseline": trend.baseline,
            "current": trend.current,
            "improvement_abs": trend.improvement_abs,
            "improvement_pct": trend.improvement_pct,
            "mcid_abs": instrument.mcid_abs,
            "mcid_reached": trend.mcid_reached,
            "remission": instrument.remission,
            "slope_per_week": trend.slope_per_week,
            "mann_kendall_p": trend.mann_kendall.p if trend.mann_kendall else None,
        }
    return evidence


def _result(
    ctx: _Context, rule: str, action: Action, recommended: float, rationale: str
) -> Recommendation:
    current = ctx.course.sessions_per_week
    changes = action in ("increase", "decrease")
    return Recommendation(
        rule=rule,
        action=action,
        current_sessions_per_week=current,
        recommended_sessions_per_week=recommended,
        phase=phase_for(recommended if changes else current),
        rationale=rationale,
        evidence=ctx.evidence,
        policy_version=ctx.params.id,
        apply=changes and ctx.course.adjustment == "auto",
    )


def _hold_for_clinician(ctx: _Context, rec: Recommendation) -> Recommendation:
    """A clinician's frequency change holds against the policy for `clinician_hold_days`."""
    course = ctx.course
    if not rec.apply or course.last_change_source != "clinician":
        return rec
    until = course.last_change_at + timedelta(days=ctx.params.clinician_hold_days)
    if ctx.now >= until:
        return rec
    note = (
        f" Not applied: a clinician set {_n(course.sessions_per_week)} a week on "
        f"{course.last_change_at.date().isoformat()}, which holds until {until.date().isoformat()}."
    )
    evidence = rec.evidence | {"clinician_hold_until": until.isoformat()}
    return Recommendation(
        **{**_as_dict(rec), "rationale": rec.rationale + note, "evidence": evidence, "apply": False}
    )


def _as_dict(rec: Recommendation) -> dict[str, Any]:
    return {name: getattr(rec, name) for name in rec.__slots__}


# --- number formatting for rationales --------------------------------------------------------

_UNIT_WORDS = {"{score}": "points", "mm": "mm", "%": "points", "cm": "cm", "deg": "°"}


# Rationales format the same few numbers over and over (frequencies, MCIDs, scores on small
# scales), so their strings are kept; the bound caps what continuous values can add.
@lru_cache(maxsize=1024)
def _n(value: float | None) -> str:
    if value is None:
        return "n/a"
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _change(ctx: _Context) -> str:
    trend, ins = ctx.trend, ctx.instrument
    assert trend is not None
    assert ins is not None
    unit = _UNIT_WORDS.get(ins.unit, ins.unit)
    pct = f", {_n(trend.improvement_pct)}%" if trend.improvement_pct is not None else ""
    verb = "improved" if (trend.improvement_abs or 0) >= 0 else "worsened"
    size = _n(abs(trend.improvement_abs or 0))
    return (
        f"{ins.code} {verb} from {_n(trend.baseline)} at baseline to {_n(trend.current)} now "
        f"({size} {unit}{pct}; MCID {_n(ins.mcid_abs)} {unit})"
    )


# --- the rules, in table order ---------------------------------------------------------------


def _inactive(ctx: _Context) -> Recommendation | None:
    if ctx.course.status == "active":
        return None
    current = ctx.course.sessions_per_week
    return _result(
        ctx, "inactive", "keep", current, f"The course is {ctx.course.status}: no change."
    )


def _adverse_event(ctx: _Context) -> Recommendation | None:
    current = ctx.course.sessions_per_week
    if ctx.params.adverse_events_until_acknowledged:
        events = ctx.course.unacknowledged_adverse_events
        if not events:
            return None
        return _result(
            ctx, "adverse-event", "review", current,
            f"A session recorded an adverse event ({'; '.join(events)}) that no clinician "
            f"has acknowledged: review, and confirm the frequency ({_n(current)} a week) with "
            "POST /courses/{id}/frequency.",
        )  # fmt: skip
    events = ctx.course.latest_session_adverse_events
    if not events:
        return None
    return _result(
        ctx, "adverse-event", "review", current,
        f"The latest session recorded an adverse event ({'; '.join(events)}): "
        f"review before the next session; frequency stays at {_n(current)} a week.",
    )  # fmt: skip


def _resumed_after_pause(ctx: _Context) -> Recommendation | None:
    days = ctx.course.resumed_after_days
    threshold = ctx.params.resume_review_days
    if threshold is None or days is None or days < threshold:
        return None
    current = ctx.course.sessions_per_week
    return _result(
        ctx, "resumed-after-pause", "review", current,
        f"The course was resumed after {_n(round(days))} days paused (review from "
        f"{threshold}): review the plan and confirm the frequency ({_n(current)} a week).",
    )  # fmt: skip


def _insufficient_data(ctx: _Context) -> Recommendation | None:
    if ctx.status != "insufficient-data":
        return None
    trend = ctx.trend
    n = trend.n if trend else 0
    what = ctx.instrument.code if ctx.instrument else "any instrument"
    if trend is not None and trend.n_used is not None and trend.used >= 3 and trend.reason:
        why = f"{n} value(s) of {what}, but {trend.reason}"
    else:
        why = (
            f"{n} value(s) of {what} in the course window, at least 3 needed with one "
            "after the first session"
        )
    return _result(
        ctx, "insufficient-data", "keep", ctx.course.sessions_per_week,
        f"Not enough data to judge the response ({why}): keep the frequency.",
    )  # fmt: skip


def _no_deficit(ctx: _Context) -> Recommendation | None:
    if not ctx.params.review_no_deficit or ctx.status != "normal":
        return None
    trend, ins = ctx.trend, ctx.instrument
    assert trend is not None
    assert ins is not None
    return _result(
        ctx, "no-deficit", "review", ctx.course.sessions_per_week,
        f"{ins.code} was {_n(trend.baseline)} at baseline, already at or past its healthy end "
        f"({_n(ins.best)}): no deficit at baseline; check the indication.",
    )  # fmt: skip


def _worsening(ctx: _Context) -> Recommendation | None:
    if ctx.status != "worsening":
        return None
    target = ctx.params.worsening_frequency
    current = ctx.course.sessions_per_week
    if current >= target:
        return _result(
            ctx, "worsening", "review", current,
            f"{_change(ctx)}: worse by at least the MCID while already at {_n(current)} a week; "
            "clinical review needed.",
        )  # fmt: skip
    return _result(
        ctx, "worsening", "increase", target,
        f"{_change(ctx)}: worse by at least the MCID, so the frequency goes back up from "
        f"{_n(current)} to {_n(target)} sessions a week.",
    )  # fmt: skip


def _max_sessions(ctx: _Context) -> Recommendation | None:
    course = ctx.course
    if course.max_sessions is None or course.sessions_done < course.max_sessions:
        return None
    return _result(
        ctx, "max-sessions", "complete", 0,
        f"{course.sessions_done} sessions done of the {course.max_sessions} prescribed: "
        "the course can be completed.",
    )  # fmt: skip


def _remission(ctx: _Context) -> Recommendation | None:
    trend, ins = ctx.trend, ctx.instrument
    if ctx.status != "responder" or trend is None or ins is None or trend.current is None:
        return None
    reached = (
        trend.current <= ins.remission if ins.better == "lower" else trend.current >= ins.remission
    )
    if not reached:
        return None
    side = "≤" if ins.better == "lower" else "≥"
    return _result(
        ctx, "remission", "complete", 0,
        f"{_change(ctx)}: a responder, and {_n(trend.current)} is within remission "
        f"({side} {_n(ins.remission)}): the course can be completed.",
    )  # fmt: skip


def _response_step_down(ctx: _Context) -> Recommendation | None:
    if ctx.status != "responder":
        return None
    current = ctx.course.sessions_per_week
    lower = ctx.params.step_down(current)
    days = ctx.days_since_change
    if lower is None or days < ctx.params.min_days_between_changes:
        return None
    return _result(
        ctx, "response-step-down", "decrease", lower,
        f"{_change(ctx)}: a responder, and {_n(days)} days since the last frequency change "
        f"(at least {ctx.params.min_days_between_changes}), so sessions step down from "
        f"{_n(current)} to {_n(lower)} a week.",
    )  # fmt: skip


def _induction_complete(ctx: _Context) -> Recommendation | None:
    params, course = ctx.params, ctx.course
    if (
        ctx.status != "partial-responder"
        or course.sessions_per_week < params.induction_frequency
        or course.sessions_done < params.induction_min_sessions
    ):
        return None
    if (
        params.wait_before_every_decrease
        and ctx.days_since_change < params.min_days_between_changes
    ):
        return None
    return _result(
        ctx, "induction-complete", "decrease", params.induction_step_to,
        f"{_change(ctx)}: a partial responder after {course.sessions_done} sessions "
        f"(induction is {params.induction_min_sessions}), so sessions go from "
        f"{_n(course.sessions_per_week)} to {_n(params.induction_step_to)} a week.",
    )  # fmt: skip


def _non_response(ctx: _Context) -> Recommendation | None:
    course = ctx.course
    if ctx.status != "non-responder" or course.sessions_done < ctx.params.non_response_min_sessions:
        return None
    return _result(
        ctx, "non-response", "review", course.sessions_per_week,
        f"{_change(ctx)}: no clinically important response after {course.sessions_done} sessions "
        f"(review from {ctx.params.non_response_min_sessions}); review the indication and plan.",
    )  # fmt: skip


def _keep(ctx: _Context) -> Recommendation:
    current = ctx.course.sessions_per_week
    why = _change(ctx) if ctx.trend and ctx.trend.baseline is not None else "No rule applies"
    return _result(
        ctx, "keep", "keep", current, f"{why}; {ctx.status}: keep {_n(current)} sessions a week."
    )


RULES: tuple[Rule, ...] = (
    _inactive,
    _adverse_event,
    _resumed_after_pause,
    _insufficient_data,
    _no_deficit,
    _worsening,
    _max_sessions,
    _remission,
    _response_step_down,
    _induction_complete,
    _non_response,
    _keep,
)
