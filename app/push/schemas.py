"""Webhook request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from app.core.outbound import OUTBOUND_URL_PATTERN, http_refused
from app.core.schemas import RequestModel, ResponseModel
from app.outbox.events import EventType

DeliveryStatus = Literal["pending", "delivered", "failed"]
# Receivers (webhooks and FHIR rest-hook endpoints) are reached over http only on these hosts.
HOSTS_SETTING = "OUTCOMES_WEBHOOK_ALLOWED_HOSTS"
HTTP_REFUSED = http_refused(HOSTS_SETTING)


class WebhookCreate(RequestModel):
    url: Annotated[
        str,
        Field(
            max_length=2000,
            pattern=OUTBOUND_URL_PATTERN,
            description="Where deliveries are POSTed: `https`, or `http` to a host listed in "
            "OUTCOMES_WEBHOOK_ALLOWED_HOSTS. Redirects are not followed.",
        ),
    ]
    events: Annotated[list[EventType], Field(min_length=1, max_length=4)]
    description: Annotated[str | None, Field(max_length=500)] = None


class WebhookRead(ResponseModel):
    id: uuid.UUID
    url: str
    events: list[EventType]
    description: str | None
    created_at: datetime


class WebhookCreated(WebhookRead):
    secret: str = Field(description="The signing secret (`whsec_...`): shown only here.")


class WebhookPage(ResponseModel):
    items: list[WebhookRead]
    next_cursor: str | None


class DeliveryRead(ResponseModel):
    id: uuid.UUID
    webhook_id: uuid.UUID
    event_id: uuid.UUID | None
    event_type: EventType | None
    status: DeliveryStatus
    attempts: int
    last_status: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


class DeliveryPage(ResponseModel):
    items: list[DeliveryRead]
    next_cursor: str | None
