from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, new_id, utcnow
from app.courses.frequency import SESSIONS_PER_WEEK_CHECK
from app.courses.schedule import next_session_due

TECHNIQUES = ("intramuscular", "paravertebral", "subcutaneous", "intra-articular")
STATUSES = ("active", "paused", "completed", "discontinued")
PHASES = ("induction", "consolidation", "maintenance")
ADJUSTMENTS = ("auto", "confirm")
FREQUENCY_SOURCES = ("initial", "policy", "clinician")


class Course(Base):
    """One prescribed series of ozone sessions for one problem."""

    __tablename__ = "courses"
    __table_args__ = (
        CheckConstraint(f"technique IN {TECHNIQUES}", name="technique"),
        CheckConstraint(f"status IN {STATUSES}", name="status"),
        CheckConstraint(f"phase IN {PHASES}", name="phase"),
        CheckConstraint(f"adjustment IN {ADJUSTMENTS}", name="adjustment"),
        CheckConstraint(SESSIONS_PER_WEEK_CHECK, name="frequency_range"),
        CheckConstraint("sessions_done >= 0", name="sessions_done_non_negative"),
        CheckConstraint("max_sessions IS NULL OR max_sessions >= 1", name="max_sessions_positive"),
        Index("ix_courses_patient_created", "patient_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"))
    indication: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(100))
    technique: Mapped[str] = mapped_column(String(20))
    start_date: Mapped[date] = mapped_column(Date)
    sessions_per_week: Mapped[int] = mapped_column(Integer)
    adjustment: Mapped[str] = mapped_column(String(10))
    max_sessions: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="active")
    phase: Mapped[str] = mapped_column(String(20))
    # Maintained by the session insert (one atomic UPDATE), so session numbers never collide.
    sessions_done: Mapped[int] = mapped_column(Integer, default=0)
    last_session_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Status moments: the latest pause and resume (the policy reviews a long pause; the next
    # session is due from the resume), and the end (values after it are not the course's).
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notes: Mapped[str | None] = mapped_column(Text)
    # The frequency policy (a registry id, e.g. `standard-v1`) that steers this course.
    policy: Mapped[str] = mapped_column(String(50), server_default="standard-v1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def next_session_due(self) -> date | None:
        return next_session_due(
            status=self.status,
            start_date=self.start_date,
            last_session_at=self.last_session_at,
            sessions_per_week=self.sessions_per_week,
            resumed_at=self.resumed_at,
        )


class FrequencyChange(Base):
    """Append-only history of a course's session frequency."""

    __tablename__ = "frequency_changes"
    __table_args__ = (
        CheckConstraint(f"source IN {FREQUENCY_SOURCES}", name="source"),
        CheckConstraint(f"phase IN {PHASES}", name="phase"),
        CheckConstraint(SESSIONS_PER_WEEK_CHECK, name="frequency_range"),
        Index("ix_frequency_changes_course_changed", "course_id", "changed_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id"))
    sessions_per_week: Mapped[int] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(20))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(10))
    rule: Mapped[str | None] = mapped_column(String(50))
    reason: Mapped[str] = mapped_column(Text)
