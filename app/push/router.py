"""Webhooks (admins): register a receiver, list and delete them, read a receiver's deliveries
and send one again."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.core.db import SessionDep
from app.core.pagination import Cursor, Limit
from app.core.state import app_state
from app.push.schemas import (
    DeliveryPage,
    DeliveryRead,
    DeliveryStatus,
    WebhookCreate,
    WebhookCreated,
    WebhookPage,
    WebhookRead,
)
from app.push.service import WebhookService

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def get_service(request: Request, session: SessionDep) -> WebhookService:
    return WebhookService(session, app_state(request).settings)


ServiceDep = Annotated[WebhookService, Depends(get_service)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
async def create_webhook(body: WebhookCreate, service: ServiceDep) -> WebhookCreated:
    """Register a receiver for some event types. Its signing secret is in this response only;
    deliveries are signed as Standard Webhooks says (docs/push.md)."""
    return await service.create(body)


@router.get("", response_model=WebhookPage)
async def list_webhooks(
    service: ServiceDep, limit: Limit = 50, cursor: Cursor = None
) -> WebhookPage:
    """The receivers, oldest first; never their secrets."""
    found, next_cursor = await service.page(limit, cursor)
    return WebhookPage(
        items=[WebhookRead.model_validate(w) for w in found], next_cursor=next_cursor
    )


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_webhook(webhook_id: uuid.UUID, service: ServiceDep) -> Response:
    """Stop delivering to this receiver (its pending deliveries go with it)."""
    await service.delete(webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    webhook_id: uuid.UUID,
    service: ServiceDep,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DeliveryPage:
    """The receiver's deliveries, oldest first: attempts, the last answer or error, and when
    the next attempt is due."""
    found, next_cursor = await service.deliveries(webhook_id, status_, limit, cursor)
    return DeliveryPage(items=found, next_cursor=next_cursor)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryRead,
)
async def resend_delivery(
    webhook_id: uuid.UUID, delivery_id: uuid.UUID, service: ServiceDep
) -> DeliveryRead:
    """Send a delivery again, now, with a new retry window (same `webhook-id`)."""
    return await service.resend(webhook_id, delivery_id)
