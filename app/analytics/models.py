"""What analytics keeps between requests: each course's latest recommendation, and each day's
values reduced as a long trend reads them."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Float, ForeignKey, Index, Integer, String, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime


class CourseRecommendation(Base):
    """A course's latest recommendation (action and rule) as the recording pipeline last
    computed it: read with the policy's inputs, so a change is noticed without another read."""

    __tablename__ = "course_recommendations"

    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id"), primary_key=True)
    action: Mapped[str] = mapped_column(String(20))
    rule: Mapped[str | None] = mapped_column(String(50))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


# The course key of values stored without a course (a key column cannot be NULL).
NO_COURSE = uuid.UUID(int=0)


class ValueDay(Base):
    """One UTC day of one instrument's values of a patient, for one course (or for none:
    ``NO_COURSE``), reduced as a trend above 100 values reads it (trends.daily_medians): the
    median of the day's values at the median of their times, and how many there were.

    A course with months of device readings reads a row a day instead of every value (the
    "bounded cost" of docs/analytics.md). Kept by ``app.analytics.days``: triggers on the
    values' tables mark a changed day stale (``ValueDayStale``) and the service recomputes it
    from the values with the trend's own function; a read takes a stale day's values as
    they are, so a row is never used once its day has changed.
    """

    __tablename__ = "value_days"

    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    instrument: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    course_key: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)  # the day's values
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the median of their times
    value: Mapped[float] = mapped_column(Float)  # the median of their values
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the newest of their times
    id: Mapped[uuid.UUID] = mapped_column(Uuid)  # orders the row among values, as their ids do


class ValueDayStale(Base):
    """A day of ``value_days`` whose values changed since it was computed: written by the
    triggers on ``observations`` and ``treatment_sessions`` (migration 0011) in the
    transaction of the change, deleted when the day is recomputed."""

    __tablename__ = "value_days_stale"
    __table_args__ = (
        Index("ix_value_days_stale_patient_day", "patient_id", "day"),
        Index("ix_value_days_stale_marked_at", "marked_at"),
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    instrument: Mapped[str] = mapped_column(String(40))
    day: Mapped[date] = mapped_column(Date)
    course_key: Mapped[uuid.UUID] = mapped_column(Uuid)
    # When: a day still receiving values is recomputed once it has settled (days.py).
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())
