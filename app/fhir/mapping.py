"""Pure functions from the domain's rows to FHIR R4 resources (plain JSON-ready dicts).

No database, no HTTP, no clock: every input is an argument, so the read API, `$everything`
and bulk exports build identical resources. Each resource's `id` is the business UUID and its
`meta.lastUpdated` the time the row last changed (see ``last_updated``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from app.courses.models import Course
from app.fhir import terminology as t
from app.fhir.search import SORTS
from app.observations.catalogue import Instrument, get_instrument
from app.observations.models import Observation
from app.patients.models import Patient
from app.treatment_sessions.models import TreatmentSession

Resource = dict[str, Any]
Row = Patient | Course | TreatmentSession | Observation

FHIR_VERSION = "4.0.1"
BULK_DATA = "http://hl7.org/fhir/uv/bulkdata"
SUBSCRIPTIONS_BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport"


# --- primitives -----------------------------------------------------------------------------


def instant(moment: datetime) -> str:
    """A FHIR instant in UTC, always with microseconds: a client that echoes a
    `meta.lastUpdated` back in `_lastUpdated=gt…` gets exactly the later records."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fhir_date(day: date) -> str:
    return day.isoformat()


def decimal(value: float) -> int | float:
    """3 rather than 3.0 where a value is whole (JSON has one number type)."""
    return int(value) if float(value).is_integer() else value


def reference(resource_type: str, resource_id: object) -> dict[str, str]:
    return {"reference": f"{resource_type}/{resource_id}"}


def quantity(value: float, ucum_code: str) -> dict[str, Any]:
    return {
        "value": decimal(value),
        "unit": t.UCUM_DISPLAY.get(ucum_code, ucum_code),
        "system": t.UCUM,
        "code": ucum_code,
    }


def _texts(values: Iterable[str]) -> list[dict[str, str]]:
    return [{"text": value} for value in values]


# --- resources ------------------------------------------------------------------------------


def resource_type_of(row: Row) -> str:
    if isinstance(row, Patient):
        return "Patient"
    if isinstance(row, Course):
        return "CarePlan"
    if isinstance(row, TreatmentSession):
        return "Procedure"
    return "Observation"


def last_updated(row: Row) -> datetime:
    """When the resource last changed: patients and courses are updated in place; sessions
    and observations are immutable (an observation's is when the server received it)."""
    if isinstance(row, Patient | Course):
        return row.updated_at
    if isinstance(row, TreatmentSession):
        return row.created_at
    return row.received_at


def to_fhir(row: Row, *, identifier_system: str) -> Resource:
    """Any supported row as its FHIR resource (``identifier_system``: a Patient's, the
    setting OUTCOMES_FHIR_IDENTIFIER_SYSTEM)."""
    if isinstance(row, Patient):
        return patient_to_fhir(row, identifier_system=identifier_system)
    if isinstance(row, Course):
        return care_plan_to_fhir(row)
    if isinstance(row, TreatmentSession):
        return procedure_to_fhir(row)
    return observation_to_fhir(row)


def _meta(row: Row) -> dict[str, str]:
    return {"lastUpdated": instant(last_updated(row))}


def patient_to_fhir(patient: Patient, *, identifier_system: str) -> Resource:
    """The patient; its external_id (the MRN) is an identifier in ``identifier_system``."""
    resource: Resource = {"resourceType": "Patient", "id": str(patient.id), "meta": _meta(patient)}
    if patient.external_id:
        resource["identifier"] = [
            {
                "use": "usual",
                "type": {
                    "coding": [
                        {
                            "system": t.IDENTIFIER_TYPE,
                            "code": "MR",
                            "display": "Medical record number",
                        }
                    ]
                },
                "system": identifier_system,
                "value": patient.external_id,
            }
        ]
    if patient.name:
        resource["name"] = [{"text": patient.name}]
    if patient.sex:
        resource["gender"] = patient.sex  # the same four codes as AdministrativeGender
    if patient.birth_date:
        resource["birthDate"] = fhir_date(patient.birth_date)
    return resource


def observation_category(instrument: Instrument, source: str | None) -> str:
    """`survey` for patient-reported scores, `exam` for measurements taken on the patient.

    Pain and disability scores are reported by the patient whoever types them in (LOINC
    72514-3 is "- Reported"), so they are always `survey`; mobility measures are `exam`, unless
    the patient measured and reported them (`source: patient`).
    """
    if instrument.kind in ("pain", "function") or source == "patient":
        return "survey"
    return "exam"


def observation_code(instrument: Instrument) -> dict[str, Any]:
    codings: list[dict[str, str]] = []
    if instrument.loinc:
        loinc = {"system": t.LOINC, "code": instrument.loinc}
        if instrument.loinc in t.LOINC_DISPLAY:
            loinc["display"] = t.LOINC_DISPLAY[instrument.loinc]
        codings.append(loinc)
    codings.append(
        {"system": t.INSTRUMENT_SYSTEM, "code": instrument.code, "display": instrument.name}
    )
    return {"coding": codings, "text": instrument.name}


def observation_to_fhir(observation: Observation) -> Resource:
    instrument = get_instrument(observation.instrument)
    if instrument is None:  # the database CHECK admits catalogue instruments only
        raise ValueError(f"unknown instrument {observation.instrument!r}")
    category = observation_category(instrument, observation.source)
    resource: Resource = {
        "resourceType": "Observation",
        "id": str(observation.id),
        "meta": _meta(observation),
    }
    if observation.context:
        resource["extension"] = [
            {"url": t.EXT_OBSERVATION_CONTEXT, "valueCode": observation.context}
        ]
    if observation.course_id:
        resource["basedOn"] = [reference("CarePlan", observation.course_id)]
    if observation.session_id:
        resource["partOf"] = [reference("Procedure", observation.session_id)]
    resource |= {
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": t.OBSERVATION_CATEGORY,
                        "code": category,
                        "display": t.CATEGORY_DISPLAY[category],
                    }
                ]
            }
        ],
        "code": observation_code(instrument),
        "subject": reference("Patient", observation.patient_id),
        "effectiveDateTime": instant(observation.recorded_at),
        "issued": instant(observation.received_at),
        "valueQuantity": quantity(observation.value, instrument.unit),
    }
    if observation.source == "patient":
        resource["performer"] = [reference("Patient", observation.patient_id)]
    if observation.note:
        resource["note"] = [{"text": observation.note}]
    return resource


def procedure_code(technique: str | None) -> dict[str, Any]:
    """Oxygen-ozone infiltration, by technique where it is one of the four known ones."""
    if technique in t.PROCEDURE_TECHNIQUES:
        code, display = f"ozone-{technique}", f"Oxygen-ozone infiltration, {technique}"
        return {"coding": [{"system": t.PROCEDURE_SYSTEM, "code": code, "display": display}]}
    coding = {
        "system": t.PROCEDURE_SYSTEM,
        "code": t.GENERIC_PROCEDURE_CODE,
        "display": "Oxygen-ozone infiltration",
    }
    text = f"Oxygen-ozone infiltration ({technique})" if technique else "Oxygen-ozone infiltration"
    return {"coding": [coding], "text": text}


def procedure_to_fhir(session: TreatmentSession) -> Resource:
    extensions: list[dict[str, Any]] = [
        {"url": t.EXT_SESSION_NUMBER, "valueInteger": session.number}
    ]
    if session.ozone_concentration_ug_ml is not None:
        extensions.append(
            {
                "url": t.EXT_OZONE_CONCENTRATION,
                "valueQuantity": quantity(session.ozone_concentration_ug_ml, "ug/mL"),
            }
        )
    if session.volume_ml is not None:
        extensions.append(
            {"url": t.EXT_OZONE_VOLUME, "valueQuantity": quantity(session.volume_ml, "mL")}
        )
    if session.injection_points is not None:
        extensions.append({"url": t.EXT_INJECTION_POINTS, "valueInteger": session.injection_points})
    for url, score in (
        (t.EXT_PAIN_BEFORE, session.pain_before),
        (t.EXT_PAIN_AFTER, session.pain_after),
    ):
        if score is not None:
            extensions.append({"url": url, "valueQuantity": quantity(score, "{score}")})
    resource: Resource = {
        "resourceType": "Procedure",
        "id": str(session.id),
        "meta": _meta(session),
        "extension": extensions,
        "basedOn": [reference("CarePlan", session.course_id)],
        "status": "completed",
        "code": procedure_code(session.technique),
        "subject": reference("Patient", session.patient_id),
        "performedDateTime": instant(session.performed_at),
    }
    if session.sites:
        resource["bodySite"] = _texts(session.sites)
    if session.adverse_events:
        resource["complication"] = _texts(session.adverse_events)
    if session.notes:
        resource["note"] = [{"text": session.notes}]
    return resource


def weekly_repeat(sessions_per_week: int) -> dict[str, Any]:
    """Timing.repeat for a weekly frequency: `frequency` sessions a `period` of one week.
    Total over what a course can hold: a whole number from 1 to 7 (app/courses/frequency.py,
    and the column's CHECK), each a positiveInt as FHIR asks."""
    return {"frequency": sessions_per_week, "period": 1, "periodUnit": "wk"}


def care_plan_to_fhir(course: Course) -> Resource:
    repeat = weekly_repeat(course.sessions_per_week)
    if course.max_sessions is not None:
        repeat["count"] = course.max_sessions  # the course ends after this many sessions
    activity_status = t.ACTIVITY_STATUS[course.status]
    if course.status == "active" and course.sessions_done == 0:
        activity_status = "scheduled"
    description = (
        f"{course.technique.capitalize()} oxygen-ozone infiltrations, {course.region} region, "
        f"for {course.indication}."
    )
    resource: Resource = {
        "resourceType": "CarePlan",
        "id": str(course.id),
        "meta": _meta(course),
        "extension": [
            {
                "url": t.EXT_COURSE_PHASE,
                "valueCoding": {"system": t.PHASE_SYSTEM, "code": course.phase},
            },
            {"url": t.EXT_SESSIONS_DONE, "valueInteger": course.sessions_done},
            {"url": t.EXT_FREQUENCY_ADJUSTMENT, "valueCode": course.adjustment},
        ],
        "status": t.CARE_PLAN_STATUS[course.status],
        "intent": "plan",
        "title": f"Oxygen-ozone infiltrations: {course.indication}",
        "description": description,
        "subject": reference("Patient", course.patient_id),
        "period": {"start": fhir_date(course.start_date)},
        "created": instant(course.created_at),
        "activity": [
            {
                "detail": {
                    "kind": "ServiceRequest",
                    "code": procedure_code(course.technique),
                    "status": activity_status,
                    "scheduledTiming": {"repeat": repeat},
                    "description": description,
                }
            }
        ],
    }
    if course.notes:
        resource["note"] = [{"text": course.notes}]
    return resource


# --- bundles, outcomes, capability -----------------------------------------------------------


def bundle_entry(base_url: str, resource: Resource, mode: str = "match") -> dict[str, Any]:
    return {
        "fullUrl": f"{base_url}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "search": {"mode": mode},
    }


def searchset(
    *,
    base_url: str,
    resources: Sequence[Resource],
    total: int | None,
    self_url: str,
    next_url: str | None,
    now: datetime,
    included: Sequence[Resource] = (),
) -> Resource:
    """A searchset Bundle: the matches, then what `_include` added (`search.mode` says which);
    ``total`` counts the matches alone, and is left out when it was not counted."""
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    bundle: Resource = {
        "resourceType": "Bundle",
        "meta": {"lastUpdated": instant(now)},
        "type": "searchset",
        "timestamp": instant(now),
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    entries = [bundle_entry(base_url, resource) for resource in resources]
    entries += [bundle_entry(base_url, resource, "include") for resource in included]
    if entries:
        bundle["entry"] = entries
    return bundle


# OperationOutcome.issue.code (IssueType) for an HTTP status.
ISSUE_CODES: Mapping[int, str] = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    413: "too-costly",
    422: "invalid",
    429: "throttled",
    500: "exception",
    503: "transient",
    504: "timeout",
}


def issue_code(status: int) -> str:
    return ISSUE_CODES.get(status, "processing" if status < 500 else "exception")


def operation_outcome(status: int, diagnostics: Sequence[str]) -> Resource:
    severity = "error" if status < 500 else "fatal"
    code = issue_code(status)
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": severity, "code": code, "diagnostics": text} for text in diagnostics
        ],
    }


# What `/metadata` advertises: exactly the interactions and parameters the router serves.
_PATIENT_PARAM = ("patient", "reference", "The patient: `Patient/<id>` or `<id>` (one per search).")
_LAST_UPDATED_PARAM = ("_lastUpdated", "date", "Prefixes gt, ge, lt, le, eq; repeat to combine.")
SEARCH_PARAMS: Mapping[str, Sequence[tuple[str, str, str]]] = {
    "Patient": (
        (
            "identifier",
            "token",
            "The MRN (`external_id`): `<system>|<value>` in the system Patient.identifier "
            "carries, `<value>`, or `<system>|` (every patient with one); commas separate "
            "alternatives; repeat to combine.",
        ),
        _LAST_UPDATED_PARAM,
    ),
    "Observation": (
        _PATIENT_PARAM,
        ("code", "token", "Instrument: LOINC (`http://loinc.org|72514-3`) or this service's code."),
        (
            "date",
            "date",
            "The effective time. Prefixes gt, ge, lt, le, eq; a value stands for its whole "
            "interval (a day, UTC, for a date); repeat to combine.",
        ),
        _LAST_UPDATED_PARAM,
    ),
    "Procedure": (_PATIENT_PARAM, _LAST_UPDATED_PARAM),
    "CarePlan": (_PATIENT_PARAM, _LAST_UPDATED_PARAM),
}

# Topic-based Subscriptions (app/push/fhir_router.py), as the Subscriptions R5 Backport IG's R4
# server statement writes them; in R4 the topics are advertised by their canonical URLs (the
# extension), since R4 has no SubscriptionTopic resource type to list.
SUBSCRIPTION_CAPABILITY: Resource = {
    "type": "Subscription",
    "extension": [
        {
            "url": SUBSCRIPTIONS_BACKPORT
            + "/StructureDefinition/capabilitystatement-subscriptiontopic-canonical",
            "valueCanonical": t.SUBSCRIPTION_TOPIC_URL,
        }
    ],
    "supportedProfile": [SUBSCRIPTIONS_BACKPORT + "/StructureDefinition/backport-subscription"],
    "documentation": "Topic-based (Subscriptions R5 Backport IG): `criteria` is the topic's "
    "canonical URL, the channel `rest-hook`, the payload `id-only` or `full-resource`, with an "
    "optional `patient` filter and heartbeat. `GET SubscriptionTopic` lists the topics (a "
    "searchset Bundle of Basic resources, the IG's R4 form of a SubscriptionTopic). A "
    "Subscription is its token's; integration and admin tokens.",
    "interaction": [{"code": "read"}, {"code": "create"}, {"code": "delete"}],
    "operation": [
        {
            "name": "status",
            "definition": SUBSCRIPTIONS_BACKPORT
            + "/OperationDefinition/backport-subscription-status",
            "documentation": "The Subscription's SubscriptionStatus (Parameters) in a "
            "searchset Bundle.",
        }
    ],
}

_SEARCH_DEFINITIONS = {
    "patient": "http://hl7.org/fhir/SearchParameter/clinical-patient",
    "code": "http://hl7.org/fhir/SearchParameter/clinical-code",
    "identifier": "http://hl7.org/fhir/SearchParameter/Patient-identifier",
    "date": "http://hl7.org/fhir/SearchParameter/clinical-date",
    "_lastUpdated": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
}


def _result_params(resource_type: str) -> list[tuple[str, str, str]]:
    """The search result parameters a type search takes: FHIR lists them with the resource's
    search parameters (they have no SearchParameter definition)."""
    sorts = ", ".join(f"`{name}`" for name in SORTS[resource_type])
    return [
        ("_sort", "string", f"One of {sorts} (`-`: descending); ties by id."),
        ("_summary", "token", "`count` only: the total, without entries."),
        (
            "_total",
            "token",
            "`accurate` (the default) or `none` (no total); `_totalMethod=count` is `accurate`.",
        ),
        ("_count", "number", "The page size: default 50, at most 500; 0 gives the total alone."),
    ]


def _search_params(resource_type: str) -> list[dict[str, str]]:
    params = []
    for name, kind, doc in [*SEARCH_PARAMS[resource_type], *_result_params(resource_type)]:
        param = {"name": name, "type": kind, "documentation": doc}
        if name in _SEARCH_DEFINITIONS:
            param["definition"] = _SEARCH_DEFINITIONS[name]
        params.append(param)
    return params


def rest_security(*, token_url: str, cors: bool) -> Resource:
    """CapabilityStatement.rest.security: SMART on FHIR, its token endpoint, and whether
    browsers may call the server (CORS, when origins are configured)."""
    return {
        "extension": [
            {"url": t.SMART_OAUTH_URIS, "extension": [{"url": "token", "valueUri": token_url}]}
        ],
        "cors": cors,
        "service": [
            {
                "coding": [
                    {
                        "system": t.RESTFUL_SECURITY_SERVICE,
                        "code": "SMART-on-FHIR",
                        "display": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth 2 bearer tokens: SMART Backend Services (client_credentials "
                "with a signed JWT) at the token endpoint, or tokens made by an admin.",
            }
        ],
        "description": "Send `Authorization: Bearer <token>` (this statement and "
        "`.well-known/smart-configuration` are open). Integration and admin tokens read every "
        "patient; a patient token reads only its own patient's compartment (other patients "
        "are a 404). A token from the token endpoint is bounded by its SMART scopes as well "
        "as its role.",
    }


def capability_statement(
    *, base_url: str, software_version: str, published: date, security: Resource
) -> Resource:
    resources: list[dict[str, Any]] = [
        {
            "type": "Patient",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": _search_params("Patient"),
            "operation": [
                {
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    "documentation": "All of the patient's CarePlans, Procedures and Observations "
                    "with the Patient, paged by `_count`; `_since` (an instant) returns only "
                    "resources changed from then on.",
                },
                {
                    "name": "export",
                    "definition": BULK_DATA + "/OperationDefinition/patient-export",
                    "documentation": "Bulk Data export of every patient's compartment (no "
                    "Groups here): `Prefer: respond-async`, `_type`, `_since`; ndjson files.",
                },
            ],
        }
    ]
    for resource_type in ("Observation", "Procedure", "CarePlan"):
        resources.append(
            {
                "type": resource_type,
                "interaction": [{"code": "search-type"}],
                "searchParam": _search_params(resource_type),
                "searchInclude": [f"{resource_type}:patient"],
            }
        )
    resources.append(SUBSCRIPTION_CAPABILITY)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": fhir_date(published),
        "publisher": "Outcomes",
        "kind": "instance",
        "software": {"name": "Outcomes", "version": software_version},
        "implementation": {"description": "Outcomes FHIR R4 read API", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Searches page with `_count` (default 50, at most 500) and "
                "follow the `next` link. Unknown parameters are a 400 unless the request "
                "says `Prefer: handling=lenient`.",
                "security": security,
                "resource": resources,
                "operation": [
                    {
                        "name": "export",
                        "definition": BULK_DATA + "/OperationDefinition/export",
                        "documentation": "Bulk Data export (`Prefer: respond-async`): poll the "
                        "`Content-Location` for the manifest of `application/fhir+ndjson` "
                        "files, one per type (`_type`: Patient, CarePlan, Procedure, "
                        "Observation; `_since`). Admin and integration tokens only.",
                    }
                ],
            }
        ],
    }
