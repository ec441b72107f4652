from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from app.core.schemas import RequestModel, ResponseModel

Role = Literal["admin", "clinician", "patient", "integration", "dashboard"]


class TokenCreate(RequestModel):
    role: Role
    patient_id: uuid.UUID | None = Field(None, description="Required for, and only for, `patient`.")
    expires_in_days: Annotated[float, Field(gt=0, le=3650, allow_inf_nan=False)] | None = Field(
        None, description="Default: no expiry."
    )

    @model_validator(mode="after")
    def _patient_binding(self) -> TokenCreate:
        if self.role == "patient" and self.patient_id is None:
            raise ValueError("a patient token needs patient_id")
        if self.role != "patient" and self.patient_id is not None:
            raise ValueError("only a patient token is bound to a patient_id")
        return self


class TokenIssued(ResponseModel):
    id: uuid.UUID
    token: str = Field(description="Shown once: only its hash is stored.")
    role: Role
    patient_id: uuid.UUID | None
    expires_at: datetime | None


class TokenRead(ResponseModel):
    """A token's metadata: never the secret, never its hash."""

    id: uuid.UUID
    role: Role
    patient_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenList(ResponseModel):
    items: list[TokenRead]
