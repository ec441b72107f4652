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
