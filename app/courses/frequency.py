"""Sessions a week: a whole number from 1 to 7 (at least one, else the course is paused; at
most one a day). The one rule for a course's frequency, a clinician's change, a policy file's
steps, and the database columns' CHECK (migration 0007)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

ALLOWED_SESSIONS_PER_WEEK = tuple(range(1, 8))
# The columns' CHECK: IN rather than BETWEEN, so SQLite (which keeps 2.5 in an INTEGER
# column) refuses a fraction as PostgreSQL does.
SESSIONS_PER_WEEK_CHECK = f"sessions_per_week IN {ALLOWED_SESSIONS_PER_WEEK}"
WHOLE_NUMBER = "must be a whole number of sessions a week, from 1 to 7"


def _whole_number(value: object) -> object:
    """3 and 3.0 are three sessions; 2.5, "3" and true are not a number of sessions."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(WHOLE_NUMBER)
    return value


SessionsPerWeek = Annotated[int, Field(ge=1, le=7), BeforeValidator(_whole_number)]
