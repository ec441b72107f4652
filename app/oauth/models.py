from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, new_id, utcnow

CLIENT_ROLES = ("integration", "dashboard")


class OAuthClient(Base):
    """A system registered by an admin (an EHR, a Bulk Data client, a dashboard backend): it
    authenticates with a JWT signed by one of its public keys (SMART Backend Services), given
    at registration (`jwks`) or published by the client at a URL it rotates them at
    (`jwks_url`): one or the other."""

    __tablename__ = "oauth_clients"
    __table_args__ = (
        CheckConstraint(f"role IN {CLIENT_ROLES}", name="role"),
        CheckConstraint("(jwks IS NULL) <> (jwks_url IS NULL)", name="key_source"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)  # client_id
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    # The most a token of this client may be granted (space-separated SMART scopes).
    scope: Mapped[str] = mapped_column(String(1000))
    # Public keys only. None is SQL NULL (not JSON null), as the CHECK above reads it.
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    jwks_url: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ClientAssertion(Base):
    """A client assertion's `jti`, kept until the assertion expires so it is never accepted
    twice (SMART Backend Services, RFC 7523 §3)."""

    __tablename__ = "oauth_client_assertions"

    client_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("oauth_clients.id", ondelete="CASCADE"), primary_key=True
    )
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class TokenEndpointFailure(Base):
    """How many token requests a client address had refused in one window of time: the
    token endpoint's bound on guessing (app/oauth/throttle.py). Rows older than two windows
    are deleted as new failures come in."""

    __tablename__ = "oauth_failures"

    caller: Mapped[str] = mapped_column(String(100), primary_key=True)  # the client address
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, index=True)
    failures: Mapped[int] = mapped_column(Integer)
