from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from app.analytics.policy import Action, Recommendation
from app.analytics.trends import Status
from app.core.schemas import Number, ResponseModel

if TYPE_CHECKING:
    from app.analytics.service import CourseTrends


def _finite_or_none(value: Any) -> Any:
    # JSON has no NaN: a statistic that cannot be computed is null.
    return None if isinstance(value, float) and not math.isfinite(value) else value


Stat = Annotated[float | None, BeforeValidator(_finite_or_none)]


class MannKendallRead(ResponseModel):
    tau: float
    p: float


class InstrumentTrendRead(ResponseModel):
    instrument: str
    n: int = Field(description="Values of the course in its window.")
    n_used: int | None = Field(
        description="Values the statistics used: n, or one a day (the day's median) above 100."
    )
    baseline: Stat
    current: Stat
    last_value: Stat
    last_recorded_at: datetime | None
    improvement_abs: Stat
    improvement_pct: Stat
    slope_per_week: Stat
    slope_ci: tuple[Stat, Stat] | None
    mann_kendall: MannKendallRead | None
    mcid_reached: bool
    status: Status
    reason: str | None = Field(
        None, description="Why the status is `insufficient-data` (null otherwise)."
    )

    @classmethod
    def of(cls, analysis: CourseTrends, instrument: str | None = None) -> list[InstrumentTrendRead]:
        """A course's trends, in catalogue order (or the one instrument asked for)."""
        return [
            cls.model_validate(trend)
            for code, trend in analysis.trends.items()
            if instrument is None or code == instrument
        ]


class TrendsRead(ResponseModel):
    patient_id: uuid.UUID
    course_id: uuid.UUID | None
    status: Status
    instruments: list[InstrumentTrendRead]


class RecommendationRead(ResponseModel):
    course_id: uuid.UUID
    current_sessions_per_week: Number
    recommended_sessions_per_week: Number
    action: Action
    phase: Literal["induction", "consolidation", "maintenance"]
    rule: str
    rationale: str
    evidence: dict[str, Any]
    policy_version: str
    computed_at: datetime

    @classmethod
    def of(cls, course_id: uuid.UUID, rec: Recommendation, now: datetime) -> RecommendationRead:
        return cls(
            course_id=course_id,
            current_sessions_per_week=rec.current_sessions_per_week,
            recommended_sessions_per_week=rec.recommended_sessions_per_week,
            action=rec.action,
            phase=rec.phase,
            rule=rec.rule,
            rationale=rec.rationale,
            evidence=rec.evidence | {"applies_automatically": rec.apply},
            policy_version=rec.policy_version,
            computed_at=now,
        )


class WeekImprovementRead(ResponseModel):
    week: int
    mean_improvement_pct: float
    n: int


class CohortSummaryRead(ResponseModel):
    courses: int
    by_status: dict[str, int]
    responder_rate: float | None
    improvement_by_week: list[WeekImprovementRead]
