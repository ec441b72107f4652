"""Courses remember when they were paused, resumed and ended; observations recorded without a
course are attributed to the one course they fit (docs/analytics.md, "Which values belong to a
course").

The attribution is the recording pipeline's rule (app.analytics.attribution), applied once to
the rows stored before it existed: an observation that names no course and fits exactly one of
its patient's courses (the course's window holds its time and its region fits the measure)
gets that course; one that fits none or several stays without one. A completed or
discontinued course is taken to have ended at its last update, the best moment the rows keep.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 11:20:00
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

from app.analytics.attribution import CourseSpan, candidates
from app.analytics.registry import policies

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("resumed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE courses SET ended_at = updated_at WHERE status IN ('completed', 'discontinued')"
    )
    op.execute("UPDATE courses SET paused_at = updated_at WHERE status = 'paused'")
    # An observation naming a session belongs to the session's course.
    op.execute(
        "UPDATE observations SET course_id = (SELECT s.course_id FROM treatment_sessions s"
        " WHERE s.id = observations.session_id)"
        " WHERE course_id IS NULL AND session_id IS NOT NULL"
    )
    _attribute_observations()


def downgrade() -> None:
    # Attributions stay: they are what the data means, and v1 reads ignore course_id.
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.drop_column("ended_at")
        batch_op.drop_column("resumed_at")
        batch_op.drop_column("paused_at")


def _aware(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite returns its text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _date(value: date | str) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _attribute_observations() -> None:
    conn = op.get_bind()
    windows = {p.id: p.window_days_before_start for p in policies().values()}
    widest = max(windows.values())
    spans: dict[object, list[CourseSpan]] = {}
    courses = conn.execute(
        sa.text("SELECT id, patient_id, region, start_date, policy, ended_at FROM courses")
    )
    for row in courses.mappings():
        span = CourseSpan(
            id=row["id"],
            region=row["region"],
            start_date=_date(row["start_date"]),
            window_days=windows.get(row["policy"], widest),
            ended_at=_aware(row["ended_at"]),
        )
        spans.setdefault(row["patient_id"], []).append(span)
    if not spans:
        return
    unattributed = conn.execute(
        sa.text(
            "SELECT id, patient_id, instrument, recorded_at FROM observations"
            " WHERE course_id IS NULL AND session_id IS NULL"
        )
    )
    updates = []
    for row in unattributed.mappings():
        recorded_at = _aware(row["recorded_at"])
        assert recorded_at is not None
        found = candidates(spans.get(row["patient_id"], []), row["instrument"], recorded_at)
        if len(found) == 1:
            updates.append({"id": row["id"], "course_id": found[0]})
    update = sa.text("UPDATE observations SET course_id = :course_id WHERE id = :id")
    for start in range(0, len(updates), _BATCH):
        conn.execute(update, updates[start : start + _BATCH])
