"""A Bulk Data export job: what a kick-off asked for, kept so any worker can answer its status
and serve its files (the files themselves are produced on demand, never stored)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, new_id, utcnow


class ExportJob(Base):
    __tablename__ = "export_jobs"
    __table_args__ = (
        CheckConstraint("kind IN ('system', 'patient')", name="kind"),
        Index("ix_export_jobs_created_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    # The token that started it: only it (or an admin) may read the status and the files.
    token_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_tokens.id"))
    kind: Mapped[str] = mapped_column(String(10))
    types: Mapped[str] = mapped_column(String(200))  # comma-separated FHIR resource types
    since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Resources changed after this instant are not in the files (see app/fhir/export.py).
    transaction_time: Mapped[datetime] = mapped_column(UTCDateTime)
    request_url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
