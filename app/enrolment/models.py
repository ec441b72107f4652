from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, new_id, utcnow


class Device(Base):
    """A patient app installation, enrolled with a code; revoking it stops its tokens."""

    __tablename__ = "devices"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    enrolment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("enrolment_codes.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EnrolmentCode(Base):
    """A single-use code a clinician gives a patient to enrol an app.

    `lookup` is the code's public part, so that a wrong guess at the rest counts against the
    code it names; only a slow hash of the whole code is stored (`code_hash`)."""

    __tablename__ = "enrolment_codes"
    __table_args__ = (Index("ix_enrolment_codes_lookup", "lookup"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"), index=True)
    lookup: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # the issuing token's id
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    burned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # too many wrong tries


class RefreshToken(Base):
    """A device's refresh token (only its SHA-256 is stored). Each use rotates it: the
    presented one is marked used and a new one issued; a used one presented again means it
    leaked, and the device is revoked with every token it holds."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set, with the device's, when the device is revoked (by staff, or for a reused token).
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
