"""FHIR R4 topic-based Subscriptions (Backport IG): an EHR subscribes with an integration
token and hears every frequency change of the patients it may read, as `history` Bundles
whose first entry is the SubscriptionStatus (Parameters), validated with fhir.resources."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.service import TokenService
from app.core.config import Settings
from app.core.db import create_sessionmaker
from app.push import fhir
from tests.factories import API, create_course
from tests.push.receiver import FAST, Received, always, receiving
from tests.support import Issue, client_of, running

FHIR = "/fhir/R4"


def valid(resource: dict[str, Any]) -> dict[str, Any]:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def subscription(endpoint: str, content: str = "id-only", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "EHR frequency sync",
        "criteria": fhir.TOPIC_URL,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": fhir.PAYLOAD_CONTENT, "valueCode": content}]},
            "header": ["Authorization: Bearer ehr-secret"],
        },
    } | extra


@dataclass
class Ehr:
    app: FastAPI
    integration: httpx.AsyncClient
    clinician: httpx.AsyncClient


@pytest.fixture
async def ehr(settings: Settings, engine: AsyncEngine, issue_token: Issue) -> AsyncIterator[Ehr]:
    async with running(settings, **FAST) as app:
        integration = client_of(app, await issue_token("integration"))
        clinician = client_of(app, await issue_token("clinician"))
        yield Ehr(app, integration, clinician)
        await integration.aclose()
        await clinician.aclose()


async def subscribe(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"{FHIR}/Subscription", json=resource)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    created: dict[str, Any] = valid(response.json())
    assert response.headers["location"].endswith(f"/Subscription/{created['id']}")
    return created


async def change(client: httpx.AsyncClient, course_id: str, per_week: int) -> None:
    response = await client.post(
        f"{API}/courses/{course_id}/frequency",
        json={"sessions_per_week": per_week, "reason": "EHR test"},
    )
    assert response.status_code == 200, response.text


def notification(request: Received) -> dict[str, Any]:
    bundle: dict[str, Any] = valid(json.loads(request.body))
    assert bundle["type"] == "history"
    status = bundle["entry"][0]["resource"]
    assert status["resourceType"] == "Parameters"
    assert status["meta"]["profile"] == [fhir.STATUS_PROFILE]
    return bundle


def params(status: dict[str, Any]) -> dict[str, Any]:
    return {p["name"]: p for p in status["parameter"]}


async def test_the_topic_is_listed(ehr: Ehr) -> None:
    response = await ehr.integration.get(f"{FHIR}/SubscriptionTopic")
    assert response.status_code == 200
    bundle = valid(response.json())
    [entry] = bundle["entry"]
    topic = entry["resource"]
    assert topic["resourceType"] == "Basic"
    urls = {e["url"]: e for e in topic["extension"]}
    assert urls[f"{fhir.R5_TOPIC}.url"]["valueUri"] == fhir.TOPIC_URL


async def test_an_ehr_hears_each_frequency_change_in_full(ehr: Ehr) -> None:
    async with receiving(always(200)) as receiver:
        created = await subscribe(ehr.integration, subscription(receiver.url, "full-resource"))
        assert created["status"] == "active"
        course = await create_course(ehr.clinician)
        await change(ehr.clinician, course["id"], 2)
        await change(ehr.clinician, course["id"], 1)
        await receiver.wait_for(lambda r: len(r.accepted()) == 2)

    first, second = (notification(r) for r in receiver.received)
    assert receiver.received[0].headers["authorization"] == "Bearer ehr-secret"
    assert receiver.received[0].headers["content-type"] == "application/fhir+json"
    status = params(first["entry"][0]["resource"])
    assert status["topic"]["valueCanonical"] == fhir.TOPIC_URL
    assert status["type"]["valueCode"] == "event-notification"
    assert status["subscription"]["valueReference"]["reference"].endswith(created["id"])
    event = {p["name"]: p for p in status["notification-event"]["part"]}
    assert event["event-number"]["valueString"] == "1"
    assert event["focus"]["valueReference"]["reference"].endswith(f"CarePlan/{course['id']}")
    care_plan = second["entry"][1]["resource"]
    assert care_plan["resourceType"] == "CarePlan"
    assert care_plan["id"] == course["id"]
    repeat = care_plan["activity"][0]["detail"]["scheduledTiming"]["repeat"]
    assert repeat["frequency"] == 1  # as it is now
    second_event = params(second["entry"][0]["resource"])["notification-event"]["part"]
    assert second_event[0]["valueString"] == "2"

    found = await ehr.integration.get(f"{FHIR}/Subscription/{created['id']}/$status")
    assert found.status_code == 200
    [entry] = valid(found.json())["entry"]
    assert params(entry["resource"])["events-since-subscription-start"]["valueString"] == "2"
    read = await ehr.integration.get(f"{FHIR}/Subscription/{created['id']}")
    assert valid(read.json())["channel"]["endpoint"] == receiver.url


async def test_id_only_a_patient_filter_and_a_revoked_token(
    ehr: Ehr, engine: AsyncEngine, issue_token: Issue
) -> None:
    course = await create_course(ehr.clinician)
    elsewhere = await create_course(ehr.clinician)
    async with create_sessionmaker(engine)() as session, session.begin():
        issued = await TokenService(session).issue("integration", None, None)
    async with receiving(always(200)) as receiver, client_of(ehr.app, issued.token) as ehr2:
        narrowed = subscription(receiver.url)
        narrowed["_criteria"] = {
            "extension": [
                {
                    "url": fhir.FILTER_CRITERIA,
                    "valueString": f"CarePlan?patient=Patient/{course['patient_id']}",
                }
            ]
        }
        await subscribe(ehr2, narrowed)
        await change(ehr.clinician, elsewhere["id"], 2)  # another patient: not carried
        await change(ehr.clinician, course["id"], 2)
        await receiver.wait_for(lambda r: len(r.accepted()) == 1)
        bundle = notification(receiver.received[0])
        [_status, focus] = bundle["entry"]
        assert "resource" not in focus  # id-only
        assert focus["fullUrl"].endswith(f"CarePlan/{course['id']}")

        async with create_sessionmaker(engine)() as session, session.begin():
            await TokenService(session).revoke(issued.row.id)
        await change(ehr.clinician, course["id"], 3)  # the token is revoked: nothing more
        await asyncio.sleep(1.0)
        assert len(receiver.received) == 1


async def test_subscriptions_are_their_tokens_and_bad_ones_are_refused(
    ehr: Ehr, issue_token: Issue
) -> None:
    created = await subscribe(ehr.integration, subscription("https://ehr.example/hook"))
    async with client_of(ehr.app, await issue_token("integration")) as other:
        response = await other.get(f"{FHIR}/Subscription/{created['id']}")
        assert response.status_code == 404
        assert valid(response.json())["resourceType"] == "OperationOutcome"
    for bad in (
        subscription("https://ehr.example/hook") | {"criteria": "Observation?code=x"},
        subscription("http://ehr.example/hook"),
        subscription("https://ehr.example/hook", "everything"),
        {"resourceType": "Patient"},
    ):
        refused = await ehr.integration.post(f"{FHIR}/Subscription", json=bad)
        assert refused.status_code == 400, refused.text
        assert valid(refused.json())["resourceType"] == "OperationOutcome"
    deleted = await ehr.integration.delete(f"{FHIR}/Subscription/{created['id']}")
    assert deleted.status_code == 204
    assert (await ehr.integration.get(f"{FHIR}/Subscription/{created['id']}")).status_code == 404


# --- heartbeats ------------------------------------------------------------------------------


def with_heartbeat(endpoint: str, seconds: int) -> dict[str, Any]:
    resource = subscription(endpoint)
    resource["channel"]["extension"] = [{"url": fhir.HEARTBEAT, "valueUnsignedInt": seconds}]
    return resource


def kind(request: Received) -> str:
    status = notification(request)["entry"][0]["resource"]
    value: str = params(status)["type"]["valueCode"]
    return value


async def test_heartbeats_come_at_the_period_and_a_notification_restarts_it(ehr: Ehr) -> None:
    """A 1 s heartbeat (the IG's unsignedInt seconds; as short as 1 for a test): a heartbeat
    Bundle about every second while nothing happens, none within a second of a notification,
    each with the status's own type and event count, and no event."""
    async with receiving(always(200)) as receiver:
        created = await subscribe(ehr.integration, with_heartbeat(receiver.url, 1))
        made = time.monotonic()
        await receiver.wait_for(lambda r: len(r.accepted()) >= 3, within_s=10)
        course = await create_course(ehr.clinician)
        await change(ehr.clinician, course["id"], 2)
        await receiver.wait_for(lambda r: any(kind(x) != "heartbeat" for x in r.accepted()))
        await receiver.wait_for(lambda r: kind(r.accepted()[-1]) == "heartbeat", within_s=10)

    beats = [r for r in receiver.accepted() if kind(r) == "heartbeat"]
    [event] = [r for r in receiver.accepted() if kind(r) == "event-notification"]
    before = [r for r in beats if r.at < event.at]
    after = [r for r in beats if r.at > event.at]
    # About the period: the first after 1 s, then one a second (polls of 0.05 s, a busy box).
    assert 0.9 <= before[0].at - made <= 2.5
    gaps = [b.at - a.at for a, b in itertools.pairwise(before)]
    assert gaps
    assert all(0.9 <= gap <= 2.5 for gap in gaps), gaps
    # A notification counts as a sign of life: the next heartbeat a period after it.
    assert after[0].at - event.at >= 0.9
    for beat in beats:
        status = params(notification(beat)["entry"][0]["resource"])
        assert "notification-event" not in status
        assert status["subscription"]["valueReference"]["reference"].endswith(created["id"])
        assert len(notification(beat)["entry"]) == 1  # the status alone
        assert beat.headers["authorization"] == "Bearer ehr-secret"
    counts = [
        params(notification(b)["entry"][0]["resource"])["events-since-subscription-start"]
        for b in (before[-1], after[0])
    ]
    assert [c["valueString"] for c in counts] == ["0", "1"]


async def test_a_revoked_tokens_subscription_gets_no_heartbeat(
    ehr: Ehr, engine: AsyncEngine
) -> None:
    async with create_sessionmaker(engine)() as session, session.begin():
        issued = await TokenService(session).issue("integration", None, None)
    async with receiving(always(200)) as receiver, client_of(ehr.app, issued.token) as ehr2:
        await subscribe(ehr2, with_heartbeat(receiver.url, 1))
        await receiver.wait_for(lambda r: len(r.accepted()) >= 1, within_s=10)
        async with create_sessionmaker(engine)() as session, session.begin():
            await TokenService(session).revoke(issued.row.id)
        await asyncio.sleep(0.5)  # a heartbeat already on its way may land
        heard = len(receiver.received)
        await asyncio.sleep(2.5)
        assert len(receiver.received) == heard


async def test_a_heartbeat_endpoint_that_hangs_holds_up_no_delivery(ehr: Ehr) -> None:
    """Heartbeats every second to an endpoint that never answers (each cut at the 2 s push
    timeout) while a course's changes go to another: they arrive as fast as without it."""
    hang = asyncio.Event()

    async def never(_request: Received) -> int:
        await hang.wait()
        return 200

    async with receiving(never) as stuck, receiving(always(200)) as receiver:
        await subscribe(ehr.integration, with_heartbeat(stuck.url, 1))
        await stuck.wait_for(lambda r: len(r.arrivals) >= 1, within_s=10)
        await subscribe(ehr.integration, subscription(receiver.url))
        course = await create_course(ehr.clinician)
        for per_week in (2, 3, 4, 5, 6):
            await change(ehr.clinician, course["id"], per_week)
        started = time.monotonic()
        await receiver.wait_for(lambda r: len(r.accepted()) == 5, within_s=20)
        took = time.monotonic() - started
        hang.set()
    assert took < 3.0, f"5 notifications took {took:.1f} s"
