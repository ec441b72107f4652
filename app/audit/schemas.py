from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from app.core.schemas import ResponseModel


class AuditEventRead(ResponseModel):
    id: uuid.UUID
    at: datetime
    token_id: uuid.UUID | None
    role: str | None
    action: Literal["read", "create", "update", "delete", "export"]
    resource_type: str
    resource_id: str | None
    patient_id: uuid.UUID | None
    outcome: Literal["allowed", "denied"]
    status: int
    request_id: str
    # A token issued at /oauth/token: the registered client, or the enrolled device, it was
    # issued to (None for a token made by an admin).
    client_id: uuid.UUID | None = None
    device_id: uuid.UUID | None = None
