"""Webhooks: registering receivers, reading their deliveries, sending one again."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import utcnow
from app.core.errors import Unprocessable
from app.core.outbound import outbound_url_problem
from app.push.errors import DeliveryNotFound, WebhookNotFound
from app.push.models import PushDelivery, PushSubscription
from app.push.repository import PushRepository
from app.push.schemas import (
    HOSTS_SETTING,
    DeliveryRead,
    DeliveryStatus,
    WebhookCreate,
    WebhookCreated,
)
from app.push.signing import new_secret


class WebhookService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.repo = PushRepository(session)

    async def create(self, data: WebhookCreate) -> WebhookCreated:
        problem = outbound_url_problem(data.url, self.settings.webhook_http_hosts, HOSTS_SETTING)
        if problem is not None:
            raise Unprocessable.at(["body", "url"], problem)
        webhook = PushSubscription(
            id=uuid.uuid4(),
            kind="webhook",
            url=data.url,
            events=list(dict.fromkeys(data.events)),
            description=data.description,
            secret=new_secret(),
            events_count=0,
            created_at=utcnow(),
        )
        await self.repo.add(webhook)
        return WebhookCreated.model_validate(webhook)

    async def get(self, webhook_id: uuid.UUID) -> PushSubscription:
        webhook = await self.repo.get(webhook_id, "webhook")
        if webhook is None:
            raise WebhookNotFound(webhook_id)
        return webhook

    async def page(
        self, limit: int, cursor: str | None
    ) -> tuple[list[PushSubscription], str | None]:
        return await self.repo.page("webhook", limit, cursor)

    async def delete(self, webhook_id: uuid.UUID) -> None:
        await self.repo.remove(await self.get(webhook_id))

    async def deliveries(
        self,
        webhook_id: uuid.UUID,
        status: DeliveryStatus | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[DeliveryRead], str | None]:
        await self.get(webhook_id)
        found, next_cursor = await self.repo.deliveries(webhook_id, status, limit, cursor)
        return await self._read(found), next_cursor

    async def resend(self, webhook_id: uuid.UUID, delivery_id: uuid.UUID) -> DeliveryRead:
        """Send a delivery again (failed, or delivered and lost by the receiver): due now, with
        a new retry window."""
        await self.get(webhook_id)
        delivery = await self.repo.delivery(webhook_id, delivery_id)
        if delivery is None:
            raise DeliveryNotFound(delivery_id)
        window = timedelta(hours=self.settings.push_retry_window_hours)
        await self.repo.resend(delivery, utcnow(), window)
        return (await self._read([delivery]))[0]

    async def _read(self, deliveries: list[PushDelivery]) -> list[DeliveryRead]:
        events = await self.repo.event_ids([d.event_seq for d in deliveries])
        return [
            DeliveryRead(
                id=d.id,
                webhook_id=d.subscription_id,
                event_id=events.get(d.event_seq, (None, None))[0],
                event_type=events.get(d.event_seq, (None, None))[1],
                status=d.status,
                attempts=d.attempts,
                last_status=d.last_status,
                last_error=d.last_error,
                last_attempt_at=d.last_attempt_at,
                next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
                delivered_at=d.delivered_at,
                created_at=d.created_at,
            )
            for d in deliveries
        ]
