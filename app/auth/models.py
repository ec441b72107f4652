from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, new_id, utcnow

ROLES = ("admin", "clinician", "patient", "integration", "dashboard")


class ApiToken(Base):
    """An opaque bearer token. Only its SHA-256 is stored: the token itself is shown once."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint(f"role IN {ROLES}", name="role"),
        # A patient token is bound to exactly one patient; no other role is.
        CheckConstraint(
            "(role = 'patient' AND patient_id IS NOT NULL) "
            "OR (role <> 'patient' AND patient_id IS NULL)",
            name="patient_binding",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    patient_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("patients.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Tokens issued at /oauth/token: the client or the enrolled device they were issued to,
    # and their SMART scopes. A token made by an admin has none: its role alone bounds it.
    client_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("oauth_clients.id"), index=True)
    device_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("devices.id"), index=True)
    scope: Mapped[str | None] = mapped_column(String(1000))


class IdempotencyKey(Base):
    """A POST's Idempotency-Key, scoped to the token that sent it, with the first response."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (CheckConstraint("state IN ('processing', 'completed')", name="state"),)

    token_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_tokens.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(12))
    response_status: Mapped[int | None]
    response_body: Mapped[bytes | None]
    response_content_type: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
