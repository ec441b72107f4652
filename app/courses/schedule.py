"""A course's pure scheduling rules (docs/analytics.md): phase by frequency, next session due."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

# The rule of the history row a resume writes (source `clinician`, the same frequency): a
# resume restarts the schedule but decides no frequency.
RESUMED = "resumed"


def phase_for(sessions_per_week: float) -> str:
    """`induction` at 3 a week, `consolidation` at 2, `maintenance` at 1 (between: the lower)."""
    if sessions_per_week >= 3:
        return "induction"
    if sessions_per_week >= 2:
        return "consolidation"
    return "maintenance"


def next_session_due(
    *,
    status: str,
    start_date: date,
    last_session_at: datetime | None,
    sessions_per_week: float,
    resumed_at: datetime | None = None,
) -> date | None:
    """The last session's date + ⌊7 / sessions_per_week⌋ days; the start date if none yet;
    the resume date when the course was resumed after its last session (a pause restarts
    the schedule, rather than leaving a session due weeks in the past).

    None when the course is not active: nothing is due on a paused or ended course.
    """
    if status != "active":
        return None
    if resumed_at is not None and (last_session_at is None or resumed_at > last_session_at):
        return max(resumed_at.date(), start_date)
    if last_session_at is None:
        return start_date
    return last_session_at.date() + timedelta(days=math.floor(7 / sessions_per_week))
