"""A course's pure scheduling rules (docs/analytics.md): phase by frequency, next session due."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta


def phase_for(sessions_per_week: float) -> str:
    """`induction` at 3 a week, `consolidation` at 2, `maintenance` at 1 (between: the lower)."""
    if sessions_per_week >= 3:
        return "induction"
    if sessions_per_week >= 2:
        return "consolidation"
    return "maintenance"


def next_session_due(
    *, status: str, start_date: date, last_session_at: datetime | None, sessions_per_week: float
) -> date | None:
    """The last session's date + ⌊7 / sessions_per_week⌋ days; the start date if none yet.

    None when the course is not active: nothing is due on a paused or ended course.
    """
    if status != "active":
        return None
    if last_session_at is None:
        return start_date
    return last_session_at.date() + timedelta(days=math.floor(7 / sessions_per_week))
