"""Who is calling: what a bearer token resolves to."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: what the access rules and the audit trail need, nothing more."""

    token_id: uuid.UUID
    role: str
    patient_id: uuid.UUID | None
    expires_at: datetime | None
    # Issued at /oauth/token: its SMART scopes (None: an admin-made token, bounded by its role
    # alone) and the client or device it was issued to.
    scope: str | None = None
    client_id: uuid.UUID | None = None
    device_id: uuid.UUID | None = None
