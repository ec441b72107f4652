from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field

from app.core.schemas import RequestModel, ResponseModel
from app.enrolment.service import DEFAULT_EXPIRES_IN_HOURS, MAX_EXPIRES_IN_HOURS


class EnrolmentCreate(RequestModel):
    expires_in_hours: Annotated[
        float, Field(gt=0, le=MAX_EXPIRES_IN_HOURS, allow_inf_nan=False)
    ] = Field(
        DEFAULT_EXPIRES_IN_HOURS,
        description="How long the code can be exchanged; fractions allowed. Default 24.",
    )


class EnrolmentIssued(ResponseModel):
    id: uuid.UUID
    code: str = Field(
        description="12 characters in three groups (`K7QM-3XPA-9D2H`), for the patient to type "
        "into the app. Shown once: only a slow hash of it is stored. Exchanged once, at "
        "`POST /oauth/token`."
    )
    expires_at: datetime
    uri: str = Field(
        description="`outcomes://enrol?server=<this server's base URL>&code=<code>`: the same "
        "code as a link (or a QR code) the app opens."
    )


class DeviceRead(ResponseModel):
    """An enrolled app installation: never its tokens."""

    id: uuid.UUID
    name: str
    created_at: datetime
    last_seen_at: datetime | None = Field(
        description="The last time the app enrolled or refreshed its tokens."
    )
    revoked_at: datetime | None


class DeviceList(ResponseModel):
    items: list[DeviceRead]
