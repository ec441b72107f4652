from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, new_id, utcnow

ACTIONS = ("read", "create", "update", "delete", "export")
OUTCOMES = ("allowed", "denied")


class AuditEvent(Base):
    """Append-only trail of every access to patient data and every denied attempt.

    Ids and outcomes only, never PHI values. The database refuses UPDATE and DELETE on this
    table (triggers in migration 0003). No foreign keys: a denied attempt may name an id that
    does not exist, and the trail must outlive what it describes.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint(f"action IN {ACTIONS}", name="action"),
        CheckConstraint(f"outcome IN {OUTCOMES}", name="outcome"),
        Index("ix_audit_events_at", "at", "id"),
        Index("ix_audit_events_patient_at", "patient_id", "at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    token_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    role: Mapped[str | None] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(10))
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    outcome: Mapped[str] = mapped_column(String(10))
    status: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str] = mapped_column(String(64))
    # The registered client or enrolled device the token was issued to, if any.
    client_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    device_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
