"""Subscriptions and their deliveries (docs/push.md).

- ``push_subscriptions``: webhooks (admin-made, signed) and FHIR Subscriptions (an
  integration token's, bounded by what that token may read).
- ``push_deliveries``: one outbox event for one subscription, with its attempts. Claimed by
  leasing: a claim moves ``next_attempt_at`` past the attempt's timeout and names itself in
  ``claim``, so a worker killed mid-attempt leaves a delivery that is due again when the
  lease ends.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, new_id, utcnow
from app.outbox.models import SEQ

DELIVERY_STATUSES = ("pending", "delivered", "failed")


class PushSubscription(Base):
    __tablename__ = "push_subscriptions"
    __table_args__ = (
        CheckConstraint("kind IN ('webhook', 'fhir')", name="kind"),
        Index("ix_push_subscriptions_created", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(10))
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(500))
    # A webhook's signing secret (whsec_...): needed in full to sign, so it is stored as is
    # (docs/security.md, "Webhooks"), shown once, never listed or logged.
    secret: Mapped[str | None] = mapped_column(String(100))
    # A FHIR Subscription's: the token that made it (its reach bounds the patients carried),
    # the one patient it is narrowed to, its payload content, heartbeat and channel headers,
    # and the resource as created (returned by GET).
    token_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    patient_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    content: Mapped[str | None] = mapped_column(String(20))
    heartbeat_seconds: Mapped[int | None] = mapped_column(Integer)
    headers: Mapped[list[str] | None] = mapped_column(JSON)
    resource: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    base_url: Mapped[str | None] = mapped_column(String(2000))  # the FHIR base it was made on
    events_count: Mapped[int] = mapped_column(Integer, default=0)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PushDelivery(Base):
    __tablename__ = "push_deliveries"
    __table_args__ = (
        CheckConstraint(f"status IN {DELIVERY_STATUSES}", name="status"),
        # Claims: the due pending ones; order: a stream's earlier pending one.
        Index(
            "ix_push_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_push_deliveries_stream", "subscription_id", "stream_id", "event_seq"),
        Index("ix_push_deliveries_subscription_created", "subscription_id", "created_at", "id"),
        Index("ix_push_deliveries_event_seq", "event_seq"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("push_subscriptions.id", ondelete="CASCADE")
    )
    event_seq: Mapped[int] = mapped_column(SEQ, ForeignKey("outbox_events.seq", ondelete="CASCADE"))
    # What is delivered in order: a course's events (a patient's when they name no course).
    stream_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    number: Mapped[int] = mapped_column(Integer)  # the subscription's nth event
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    retry_until: Mapped[datetime] = mapped_column(UTCDateTime)
    claim: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
