"""What the demo reports once the cohort is written: the policy's doings, counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.demo.cohort import ARCHETYPE_SHARES
from app.demo.plan import PlannedPatient

REVIEW_RULES = ("non-response", "worsening", "adverse-event")
COMPLETE_RULES = ("max-sessions", "remission")
POLICY_RULES = ("response-step-down", "induction-complete", "worsening")
STATUSES = ("responder", "partial-responder", "non-responder", "worsening", "insufficient-data")


@dataclass(frozen=True, slots=True)
class CourseOutcome:
    """What the policy did with one course, as the API reports it after the last post."""

    policy_rules: tuple[str, ...]  # the rules of the course's `policy` history rows
    rule: str  # the recommendation read after the last post (before any clinician action)
    action: str
    confirmed: bool  # a clinician applied that recommendation (confirm courses)
    # A change recommended in a confirm course that the demo's clinician left for a clinician
    # to confirm (on the dashboard, for example): the patient's external id, else None.
    pending: str | None = None


@dataclass(frozen=True, slots=True)
class DemoSummary:
    patients: int
    courses: int
    sessions: int
    observations: int
    completed_courses: int
    archetypes: dict[str, int]
    policy_changes: dict[str, int]  # by rule, applied by the service in auto courses
    confirmed_changes: dict[str, int]  # by rule, applied by a clinician in confirm courses
    pending_changes: list[str]  # the patients whose confirm course awaits a clinician's change
    reviews: dict[str, int]  # recommendations `review`, by rule
    completes: dict[str, int]  # recommendations `complete`, by rule
    cohort_courses: int
    by_status: dict[str, int]
    responder_rate: float | None

    def lines(self) -> list[str]:
        rate = "n/a" if self.responder_rate is None else f"{100 * self.responder_rate:.0f}%"
        return [
            f"demo cohort loaded: {self.patients} patients, {self.courses} courses, "
            f"{self.sessions} sessions, {self.observations} observations",
            f"archetypes: {_counts(self.archetypes)}",
            f"policy changes applied (auto courses): {sum(self.policy_changes.values())} "
            f"({_counts(self.policy_changes)})",
            f"recommendations confirmed by a clinician (confirm courses): "
            f"{sum(self.confirmed_changes.values())} ({_counts(self.confirmed_changes)}); "
            f"left for you to confirm: {len(self.pending_changes)} "
            f"({', '.join(self.pending_changes) or 'none'})",
            f"recommendations to review: {sum(self.reviews.values())} ({_counts(self.reviews)})",
            f"recommendations to complete: {sum(self.completes.values())} "
            f"({_counts(self.completes)}); courses the demo completed at max_sessions: "
            f"{self.completed_courses}",
            f"cohort summary ({self.cohort_courses} courses in the database): "
            f"{_counts(self.by_status)}; responder rate {rate}",
        ]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"


def _by_rule(rules: Sequence[str], known: Sequence[str]) -> dict[str, int]:
    """Counts in the order of ``known`` (zeros included), then any other rule seen."""
    counts = Counter(rules)
    return {rule: counts[rule] for rule in known} | {
        rule: n for rule, n in sorted(counts.items()) if rule not in known
    }


def summarise(
    plan: Sequence[PlannedPatient], outcomes: Sequence[CourseOutcome], cohort: dict[str, Any]
) -> DemoSummary:
    archetypes = Counter(p.archetype for p in plan)
    return DemoSummary(
        patients=len(plan),
        courses=len(plan),
        sessions=sum(len(p.course.sessions) for p in plan),
        observations=sum(len(p.course.observations) for p in plan),
        completed_courses=sum(1 for p in plan if p.course.reached_max_sessions),
        archetypes={name: archetypes[name] for name, _ in ARCHETYPE_SHARES},
        policy_changes=_by_rule([r for o in outcomes for r in o.policy_rules], POLICY_RULES),
        confirmed_changes=_by_rule([o.rule for o in outcomes if o.confirmed], POLICY_RULES),
        pending_changes=[o.pending for o in outcomes if o.pending is not None],
        reviews=_by_rule([o.rule for o in outcomes if o.action == "review"], REVIEW_RULES),
        completes=_by_rule([o.rule for o in outcomes if o.action == "complete"], COMPLETE_RULES),
        cohort_courses=int(cohort["courses"]),
        by_status={s: int(cohort["by_status"].get(s, 0)) for s in STATUSES},
        responder_rate=cohort["responder_rate"],
    )
