from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, new_id, utcnow
from app.observations.catalogue import value_check_sql

CONTEXTS = ("rest", "movement", "night", "morning")
SOURCES = ("patient", "clinician", "device")


class Observation(Base):
    """A pain score or mobility measure. Its id may come from the client (offline apps);
    the primary key is what makes a retried post land exactly once."""

    __tablename__ = "observations"
    __table_args__ = (
        CheckConstraint(value_check_sql(), name="value_in_instrument_range"),
        CheckConstraint(f"context IN {CONTEXTS}", name="context"),
        CheckConstraint(f"source IN {SOURCES}", name="source"),
        # The access path of lists, trends and FHIR searches: patient + instrument + time.
        Index(
            "ix_observations_patient_instrument_recorded",
            "patient_id",
            "instrument",
            "recorded_at",
            "id",
        ),
        Index("ix_observations_patient_recorded", "patient_id", "recorded_at", "id"),
        # FHIR `_lastUpdated` pulls across all patients, in (received_at, id) order.
        Index("ix_observations_received", "received_at", "id"),
        Index("ix_observations_course_id", "course_id"),
        Index("ix_observations_session_id", "session_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"))
    instrument: Mapped[str] = mapped_column(String(40))
    value: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    course_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("courses.id"))
    session_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("treatment_sessions.id"))
    context: Mapped[str | None] = mapped_column(String(10))
    source: Mapped[str | None] = mapped_column(String(10))
    note: Mapped[str | None] = mapped_column(Text)
