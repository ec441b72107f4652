from __future__ import annotations

import uuid

from app.core.errors import NotFound


class WebhookNotFound(NotFound):
    slug = "webhook-not-found"

    def __init__(self, webhook_id: uuid.UUID) -> None:
        super().__init__(f"No webhook {webhook_id}.")


class DeliveryNotFound(NotFound):
    slug = "delivery-not-found"

    def __init__(self, delivery_id: uuid.UUID) -> None:
        super().__init__(f"No delivery {delivery_id} of this webhook.")
