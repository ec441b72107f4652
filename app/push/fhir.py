"""FHIR R4 topic-based Subscriptions, as the Subscriptions R5 Backport IG writes them for R4:
the topic (a Basic resource carrying the R5 SubscriptionTopic's elements as cross-version
extensions, with its canonical URL), reading a Subscription a client posts, the
SubscriptionStatus (a Parameters resource), and the notifications (``history`` Bundles whose
first entry is the status)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.courses.models import Course
from app.fhir import terminology as t
from app.fhir.mapping import SUBSCRIPTIONS_BACKPORT, care_plan_to_fhir, instant
from app.push.models import PushSubscription
from app.push.repository import Claimed

Resource = dict[str, Any]

BACKPORT = f"{SUBSCRIPTIONS_BACKPORT}/StructureDefinition"
STATUS_PROFILE = f"{BACKPORT}/backport-subscription-status-r4"
NOTIFICATION_PROFILE = f"{BACKPORT}/backport-subscription-notification-r4"
SUBSCRIPTION_PROFILE = f"{BACKPORT}/backport-subscription"
PAYLOAD_CONTENT = f"{BACKPORT}/backport-payload-content"
HEARTBEAT = f"{BACKPORT}/backport-heartbeat-period"
FILTER_CRITERIA = f"{BACKPORT}/backport-filter-criteria"
R5_TOPIC = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"

TOPIC_URL = t.SUBSCRIPTION_TOPIC_URL
TOPIC_ID = TOPIC_URL.rsplit("/", 1)[-1]
CONTENTS = ("id-only", "full-resource")
MAX_HEARTBEAT_SECONDS = 86_400


def topic() -> Resource:
    """The one topic: a course's (CarePlan's) weekly frequency changed, by the policy or a
    clinician. Filterable by patient."""
    return {
        "resourceType": "Basic",
        "id": TOPIC_ID,
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]
        },
        "extension": [
            {"url": f"{R5_TOPIC}.url", "valueUri": TOPIC_URL},
            {"url": f"{R5_TOPIC}.title", "valueString": "CarePlan frequency changed"},
            {"url": f"{R5_TOPIC}.status", "valueCode": "active"},
            {
                "url": f"{R5_TOPIC}.description",
                "valueMarkdown": "A course's weekly session frequency (the CarePlan activity's "
                "scheduledTiming.repeat) changed: a policy step or a clinician's change.",
            },
            {
                "url": f"{R5_TOPIC}.resourceTrigger",
                "extension": [
                    {
                        "url": "description",
                        "valueMarkdown": "CarePlan.activity.detail.scheduledTiming changed",
                    },
                    {
                        "url": "resource",
                        "valueUri": "http://hl7.org/fhir/StructureDefinition/CarePlan",
                    },
                    {"url": "supportedInteraction", "valueCode": "update"},
                ],
            },
            {
                "url": f"{R5_TOPIC}.canFilterBy",
                "extension": [
                    {"url": "resource", "valueUri": "CarePlan"},
                    {"url": "filterParameter", "valueString": "patient"},
                ],
            },
            {
                "url": f"{R5_TOPIC}.notificationShape",
                "extension": [{"url": "resource", "valueUri": "CarePlan"}],
            },
        ],
    }


def subscription_resource(sub: PushSubscription, status: str = "active") -> Resource:
    """The Subscription as stored, with its id and its current status."""
    resource = dict(sub.resource or {})
    resource["id"] = str(sub.id)
    resource["status"] = status
    resource["meta"] = {"profile": [SUBSCRIPTION_PROFILE]}
    return resource


def status_parameters(
    sub: PushSubscription,
    kind: str,
    events: list[tuple[int, datetime, str | None]] = (),  # type: ignore[assignment]
) -> Resource:
    """The SubscriptionStatus (R4: Parameters): ``kind`` event-notification, heartbeat or
    query-status; ``events`` (number, timestamp, focus reference) for a notification."""
    base = sub.base_url or t.SERVICE_BASE
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{sub.id}"}},
        {"name": "topic", "valueCanonical": TOPIC_URL},
        {"name": "status", "valueCode": "active"},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(sub.events_count)},
    ]
    for number, moment, focus in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(number)},
            {"name": "timestamp", "valueInstant": instant(moment)},
        ]
        if focus is not None:
            parts.append({"name": "focus", "valueReference": {"reference": focus}})
        parameters.append({"name": "notification-event", "part": parts})
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }


def _status_entry(sub: PushSubscription, status: Resource) -> dict[str, Any]:
    base = sub.base_url or t.SERVICE_BASE
    return {
        "fullUrl": f"urn:uuid:{status['id']}",
        "resource": status,
        "request": {"method": "GET", "url": f"{base}/Subscription/{sub.id}/$status"},
        "response": {"status": "200"},
    }


def bundle(sub: PushSubscription, status: Resource, entries: list[dict[str, Any]]) -> Resource:
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": instant(utcnow()),
        "entry": [_status_entry(sub, status), *entries],
    }


async def notification(session: AsyncSession, sub: PushSubscription, delivery: Claimed) -> bytes:
    """The notification of one event: the status, then the CarePlan (its reference only for
    `id-only`; the resource as it is now for `full-resource`)."""
    base = sub.base_url or t.SERVICE_BASE
    assert delivery.course_id is not None
    focus = f"{base}/CarePlan/{delivery.course_id}"
    status = status_parameters(
        sub, "event-notification", [(delivery.number, delivery.occurred_at, focus)]
    )
    entry: dict[str, Any] = {
        "fullUrl": focus,
        "request": {"method": "PUT", "url": f"CarePlan/{delivery.course_id}"},
        "response": {"status": "200"},
    }
    if sub.content == "full-resource":
        course = await session.get(Course, delivery.course_id)
        if course is not None:
            entry["resource"] = care_plan_to_fhir(course)
    return json.dumps(bundle(sub, status, [entry])).encode()


def heartbeat(sub: PushSubscription, now: datetime) -> bytes:
    del now
    return json.dumps(bundle(sub, status_parameters(sub, "heartbeat"), [])).encode()


def request_headers(sub: PushSubscription) -> dict[str, str]:
    """The channel's headers (``Name: value`` each, as the client gave them) and the type."""
    headers = {"content-type": "application/fhir+json"}
    for line in sub.headers or []:
        name, _, value = line.partition(":")
        if name.strip() and value.strip():
            headers[name.strip()] = value.strip()
    return headers
