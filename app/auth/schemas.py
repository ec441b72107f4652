from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import ConfigDict, Field, model_validator

from app.core.schemas import RequestModel, ResponseModel

Role = Literal["admin", "clinician", "patient", "integration", "dashboard"]


def _patient_binding_schema(schema: dict[str, Any]) -> None:
    """A patient token names its patient; no other token names one."""
    others = [role for role in get_args(Role) if role != "patient"]
    schema["oneOf"] = [
        {
            "properties": {
                "role": {"const": "patient"},
                "patient_id": {"type": "string", "format": "uuid"},
            },
            "required": ["patient_id"],
        },
        {"properties": {"role": {"enum": others}, "patient_id": {"type": "null"}}},
    ]


class TokenCreate(RequestModel):
    model_config = ConfigDict(json_schema_extra=_patient_binding_schema)

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


class MeRead(ResponseModel):
    """The presented token, as the access rules see it: no patient data beyond the id."""

    role: Role
    scope: str | None = Field(
        description="Its SMART scopes (space-separated) when issued at /oauth/token; null for "
        "a token made by an admin, which its role alone bounds."
    )
    patient_id: uuid.UUID | None = Field(description="The patient a `patient` token is bound to.")
    client_id: uuid.UUID | None = Field(description="The registered client it was issued to.")
    device_id: uuid.UUID | None = Field(description="The enrolled device it was issued to.")
    expires_at: datetime | None
