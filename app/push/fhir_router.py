"""FHIR R4 topic-based Subscriptions (Subscriptions R5 Backport IG) under `/fhir/R4`:
the topic list, creating, reading and deleting a Subscription, and its `$status`.

Integration (and admin) tokens subscribe; a token whose SMART scope is set must cover reading
CarePlans (``system/CarePlan.rs``, ``system/*.rs``, or their v1 forms). A Subscription is its
token's (or an admin's) alone: others get a 404. Its notifications only ever carry patients
that token may read, checked again at each event (a revoked token's subscription goes quiet).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Request, Response, status
from pydantic import BeforeValidator, ConfigDict, Field

from app.auth.access import PrincipalDep, authorize
from app.auth.errors import Forbidden
from app.auth.principal import Principal
from app.core.db import SessionDep, utcnow
from app.core.errors import NotFound, Unprocessable
from app.core.outbound import OUTBOUND_URL_PATTERN, outbound_url_problem
from app.core.schemas import RequestModel
from app.core.state import app_state
from app.fhir.mapping import instant
from app.fhir.responses import FHIR_MEDIA_TYPE, FhirResponse
from app.push import fhir
from app.push.models import PushSubscription
from app.push.repository import FHIR_TOPIC_EVENTS, PushRepository
from app.push.schemas import HOSTS_SETTING

PREFIX = "/fhir/R4"
_resource = {"content": {FHIR_MEDIA_TYPE: {"schema": {"type": "object"}}}}
_outcome = {
    "description": "OperationOutcome",
    "content": {FHIR_MEDIA_TYPE: {"schema": {"type": "object"}}},
}
router = APIRouter(
    prefix=PREFIX,
    tags=["fhir"],
    dependencies=[Depends(authorize)],
    default_response_class=FhirResponse,
    responses={s: _outcome for s in (400, 401, 403, 404, 500)},
)

# The scopes that let a token read CarePlans (SMART v2 and v1 forms).
_READS_CAREPLANS = {
    f"{who}/{what}.{how}"
    for who in ("system", "user", "patient")
    for what in ("CarePlan", "*")
    for how in ("rs", "r", "read", "*", "cruds")
}


UUID_PATTERN = "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
_FILTER = f"^(CarePlan\\?)?patient=(Patient/)?{UUID_PATTERN}$"
_HEADER = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+:[^\\x00\\r\\n]*$"


def _whole(value: object) -> object:
    """An unsignedInt as JSON writes one: 3600 or 3600.0, never "3600" or true."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number")
    return value


class PayloadContent(RequestModel):
    url: Literal[fhir.PAYLOAD_CONTENT]  # type: ignore[valid-type]
    valueCode: Literal["id-only", "full-resource"]


class PayloadElement(RequestModel):
    extension: Annotated[list[PayloadContent], Field(min_length=1, max_length=1)]


class HeartbeatPeriod(RequestModel):
    url: Literal[fhir.HEARTBEAT]  # type: ignore[valid-type]
    valueUnsignedInt: Annotated[
        int, Field(ge=1, le=fhir.MAX_HEARTBEAT_SECONDS), BeforeValidator(_whole)
    ]


class FilterCriteria(RequestModel):
    url: Literal[fhir.FILTER_CRITERIA]  # type: ignore[valid-type]
    valueString: Annotated[str, Field(pattern=_FILTER)]


class CriteriaElement(RequestModel):
    extension: Annotated[list[FilterCriteria], Field(min_length=1, max_length=1)]


class Channel(RequestModel):
    # Header lines are sent as given: not stripped (the pattern says what is accepted).
    model_config = ConfigDict(str_strip_whitespace=False)

    type: Literal["rest-hook"]
    endpoint: Annotated[
        str,
        Field(
            max_length=2000,
            pattern=OUTBOUND_URL_PATTERN,
            description="`https`, or `http` to a host in OUTCOMES_WEBHOOK_ALLOWED_HOSTS.",
        ),
    ]
    payload: Literal["application/fhir+json", "application/json"] | None = None
    payload_content: Annotated[PayloadElement | None, Field(alias="_payload")] = None
    header: Annotated[
        list[Annotated[str, Field(max_length=1000, pattern=_HEADER)]], Field(max_length=10)
    ] = []
    extension: Annotated[list[HeartbeatPeriod], Field(max_length=1)] = []


class SubscriptionCreate(RequestModel):
    """A topic-based Subscription (Backport IG, R4) as this server takes it."""

    model_config = ConfigDict(populate_by_name=True)

    resourceType: Literal["Subscription"]
    status: Literal["requested", "active", "off", "error"] | None = None
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    criteria: Literal[fhir.TOPIC_URL]  # type: ignore[valid-type]
    criteria_filter: Annotated[CriteriaElement | None, Field(alias="_criteria")] = None
    channel: Channel


class SubscriptionNotFound(NotFound):
    slug = "subscription-not-found"


def _may_read_careplans(principal: Principal) -> bool:
    if principal.scope is None:  # an opaque token: its role decides (the rule did)
        return True
    return bool(set(principal.scope.split()) & _READS_CAREPLANS)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def read_subscription(
    body: SubscriptionCreate, http_hosts: frozenset[str]
) -> tuple[str, str, int | None, list[str], uuid.UUID | None]:
    """What a posted Subscription asks for: (endpoint, content, heartbeat, headers, patient);
    a 400 (OperationOutcome) for an endpoint this deployment does not allow."""
    channel = body.channel
    if (problem := outbound_url_problem(channel.endpoint, http_hosts, HOSTS_SETTING)) is not None:
        raise Unprocessable.at(["body", "channel", "endpoint"], problem)
    content = channel.payload_content.extension[0].valueCode if channel.payload_content else None
    heartbeat = channel.extension[0].valueUnsignedInt if channel.extension else None
    patient = None
    if body.criteria_filter is not None:
        raw = body.criteria_filter.extension[0].valueString.rsplit("=", 1)[-1]
        patient = uuid.UUID(raw.removeprefix("Patient/"))
    return channel.endpoint, content or "id-only", heartbeat, list(channel.header), patient


async def _own(
    session: SessionDep, principal: Principal, subscription_id: uuid.UUID
) -> PushSubscription:
    sub = await PushRepository(session).get(subscription_id, "fhir")
    if sub is None or (principal.role != "admin" and sub.token_id != principal.token_id):
        raise SubscriptionNotFound("No such Subscription.")
    return sub


@router.get("/SubscriptionTopic", summary="The subscription topics", responses={200: _resource})
async def subscription_topics(request: Request) -> FhirResponse:
    """A searchset Bundle of the one topic (a course's frequency changed), as the Backport IG
    represents an R5 SubscriptionTopic in R4: a Basic resource with its canonical URL."""
    base = _base(request)
    topic = fhir.topic()
    return FhirResponse(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "timestamp": instant(utcnow()),
            "total": 1,
            "link": [{"relation": "self", "url": f"{base}/SubscriptionTopic"}],
            "entry": [
                {
                    "fullUrl": f"{base}/Basic/{topic['id']}",
                    "resource": topic,
                    "search": {"mode": "match"},
                }
            ],
        }
    )


@router.post(
    "/Subscription",
    summary="Subscribe to a topic",
    status_code=status.HTTP_201_CREATED,
    responses={201: _resource},
)
async def create_subscription(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    body: Annotated[SubscriptionCreate, Body(media_type=FHIR_MEDIA_TYPE)],
) -> FhirResponse:
    """A rest-hook Subscription to the CarePlan frequency topic (`criteria`), `id-only` or
    `full-resource`, optionally with a heartbeat and a `patient` filter. Active at once."""
    if not _may_read_careplans(principal):
        raise Forbidden("This token's scope does not cover reading CarePlans.")
    settings = app_state(request).settings
    endpoint, content, heartbeat, headers, patient = read_subscription(
        body, settings.webhook_http_hosts
    )
    resource = body.model_dump(by_alias=True, exclude_none=True, exclude={"status"})
    if principal.patient_id is not None and patient not in (None, principal.patient_id):
        raise Forbidden("This token may not read that patient.")
    sub = PushSubscription(
        id=uuid.uuid4(),
        kind="fhir",
        url=endpoint,
        events=sorted(FHIR_TOPIC_EVENTS),
        token_id=principal.token_id,
        patient_id=patient or principal.patient_id,
        content=content,
        heartbeat_seconds=heartbeat,
        headers=headers,
        resource=resource,
        base_url=_base(request),
        events_count=0,
        created_at=utcnow(),
    )
    await PushRepository(session).add(sub)
    return FhirResponse(
        fhir.subscription_resource(sub),
        status_code=status.HTTP_201_CREATED,
        headers={"Location": f"{_base(request)}/Subscription/{sub.id}"},
    )


@router.get(
    "/Subscription/{subscription_id}", summary="Read a Subscription", responses={200: _resource}
)
async def read_subscription_route(
    subscription_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> FhirResponse:
    return FhirResponse(fhir.subscription_resource(await _own(session, principal, subscription_id)))


@router.delete(
    "/Subscription/{subscription_id}",
    summary="Delete a Subscription",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
async def delete_subscription(
    subscription_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> Response:
    """No more notifications (those not yet sent are dropped)."""
    await PushRepository(session).remove(await _own(session, principal, subscription_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/Subscription/{subscription_id}/$status",
    summary="A Subscription's status",
    responses={200: _resource},
)
async def subscription_status(
    subscription_id: uuid.UUID, request: Request, session: SessionDep, principal: PrincipalDep
) -> FhirResponse:
    """A searchset Bundle holding the SubscriptionStatus (Parameters, R4)."""
    sub = await _own(session, principal, subscription_id)
    status_resource = fhir.status_parameters(sub, "query-status")
    base = _base(request)
    return FhirResponse(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "timestamp": instant(utcnow()),
            "total": 1,
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{status_resource['id']}",
                    "resource": status_resource,
                    "search": {"mode": "match"},
                }
            ],
            "link": [{"relation": "self", "url": f"{base}/Subscription/{sub.id}/$status"}],
        }
    )
