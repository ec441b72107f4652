from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, new_id, utcnow


class TreatmentSession(Base):
    """One ozone infiltration session logged by a clinician."""

    __tablename__ = "treatment_sessions"
    __table_args__ = (
        UniqueConstraint("course_id", "number"),
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint(
            "ozone_concentration_ug_ml IS NULL OR "
            "(ozone_concentration_ug_ml >= 1 AND ozone_concentration_ug_ml <= 80)",
            name="ozone_concentration_range",
        ),
        CheckConstraint(
            "volume_ml IS NULL OR (volume_ml >= 0 AND volume_ml <= 50)", name="volume_range"
        ),
        CheckConstraint(
            "injection_points IS NULL OR (injection_points >= 1 AND injection_points <= 50)",
            name="injection_points_range",
        ),
        CheckConstraint(
            "pain_before IS NULL OR (pain_before >= 0 AND pain_before <= 10)",
            name="pain_before_range",
        ),
        CheckConstraint(
            "pain_after IS NULL OR (pain_after >= 0 AND pain_after <= 10)", name="pain_after_range"
        ),
        Index("ix_treatment_sessions_course_performed", "course_id", "performed_at", "id"),
        Index("ix_treatment_sessions_patient_performed", "patient_id", "performed_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id"))
    # Denormalised from the course so patient-wide reads (FHIR Procedure?patient=) need no join.
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"))
    number: Mapped[int] = mapped_column(Integer)
    performed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    technique: Mapped[str | None] = mapped_column(String(50))
    sites: Mapped[list[str]] = mapped_column(JSON, default=list)
    ozone_concentration_ug_ml: Mapped[float | None] = mapped_column(Float)
    volume_ml: Mapped[float | None] = mapped_column(Float)
    injection_points: Mapped[int | None] = mapped_column(Integer)
    pain_before: Mapped[int | None] = mapped_column(Integer)
    pain_after: Mapped[int | None] = mapped_column(Integer)
    adverse_events: Mapped[list[str]] = mapped_column(JSON, default=list)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
