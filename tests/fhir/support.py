"""Checks every FHIR test applies to every resource the service emits.

`assert_valid` parses a resource with the `fhir.resources` R4B models (structure, cardinality,
primitive formats) and then checks what those models do not: the value sets this service
binds to (statuses, categories, units of time, gender, issue codes), LOINC codes and their
check digits, UCUM units, and the types references may point to.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import httpx
from fhir.resources.R4B import get_fhir_model_class

from app.fhir import terminology as t
from app.observations.catalogue import CATALOGUE

FHIR_JSON = "application/fhir+json"
Resource = dict[str, Any]
# The type of the `as_role` fixture (tests/fhir/conftest.py).
RoleClient = Callable[..., Awaitable[httpx.AsyncClient]]

# Required bindings in R4 (hl7.org/fhir/R4/valueset-*.html).
OBSERVATION_STATUS = {
    "registered", "preliminary", "final", "amended", "corrected", "cancelled",
    "entered-in-error", "unknown",
}  # fmt: skip
EVENT_STATUS = {
    "preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
    "entered-in-error", "unknown",
}  # fmt: skip
REQUEST_STATUS = {
    "draft",
    "active",
    "on-hold",
    "revoked",
    "completed",
    "entered-in-error",
    "unknown",
}
CARE_PLAN_INTENT = {"proposal", "plan", "order", "option"}
CARE_PLAN_ACTIVITY_STATUS = {
    "not-started", "scheduled", "in-progress", "on-hold", "completed", "cancelled", "stopped",
    "unknown", "entered-in-error",
}  # fmt: skip
CARE_PLAN_ACTIVITY_KIND = {
    "Appointment", "CommunicationRequest", "DeviceRequest", "MedicationRequest",
    "NutritionOrder", "Task", "ServiceRequest", "VisionPrescription",
}  # fmt: skip
UNITS_OF_TIME = {"s", "min", "h", "d", "wk", "mo", "a"}
GENDER = {"male", "female", "other", "unknown"}
OBSERVATION_CATEGORIES = {
    "social-history", "vital-signs", "imaging", "laboratory", "procedure", "survey", "exam",
    "therapy", "activity",
}  # fmt: skip
ISSUE_SEVERITY = {"fatal", "error", "warning", "information"}
ISSUE_TYPE = {
    "invalid", "structure", "required", "value", "invariant", "security", "login", "unknown",
    "expired", "forbidden", "suppressed", "processing", "not-supported", "duplicate",
    "multiple-matches", "not-found", "deleted", "too-long", "code-invalid", "extension",
    "too-costly", "business-rule", "conflict", "transient", "lock-error", "no-store",
    "exception", "timeout", "incomplete", "throttled", "informational",
}  # fmt: skip
BUNDLE_LINK_RELATIONS = {"self", "next", "previous", "first", "last"}
SEARCH_ENTRY_MODE = {"match", "include", "outcome"}
# UCUM codes the service emits (the catalogue's units plus the session's ug/mL and mL).
UCUM_CODES = {ins.unit for ins in CATALOGUE} | {"ug/mL", "mL"}
assert {"{score}", "mm", "%", "cm", "deg", "ug/mL", "mL"} == UCUM_CODES
LOINC_CODES = {ins.loinc for ins in CATALOGUE if ins.loinc}
# Reference targets R4 allows for the elements the service fills.
REFERENCE_TARGETS: Mapping[tuple[str, str], set[str]] = {
    ("Observation", "subject"): {"Patient", "Group", "Device", "Location"},
    ("Observation", "basedOn"): {
        "CarePlan", "DeviceRequest", "ImmunizationRecommendation", "MedicationRequest",
        "NutritionOrder", "ServiceRequest",
    },
    ("Observation", "partOf"): {
        "MedicationAdministration", "MedicationDispense", "MedicationStatement", "Procedure",
        "Immunization", "ImagingStudy",
    },
    ("Observation", "performer"): {
        "Practitioner", "PractitionerRole", "Organization", "CareTeam", "Patient",
        "RelatedPerson",
    },
    ("Procedure", "subject"): {"Patient", "Group"},
    ("Procedure", "basedOn"): {"CarePlan", "ServiceRequest"},
    ("CarePlan", "subject"): {"Patient", "Group"},
}  # fmt: skip
ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def loinc_check_digit_ok(code: str) -> bool:
    """LOINC's mod-10 check digit (the Luhn variant LOINC documents)."""
    body, _, check = code.partition("-")
    if not (body.isdigit() and check.isdigit() and len(check) == 1):
        return False
    digits = [int(d) for d in body]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 0:  # the rightmost digit of the body is doubled
            doubled = digit * 2
            total += doubled // 10 + doubled % 10
        else:
            total += digit
    return (10 - total % 10) % 10 == int(check)


def assert_valid(resource: Resource) -> Resource:
    """Parse with fhir.resources R4B (a Bundle's entries too), then check value sets."""
    model = get_fhir_model_class(resource["resourceType"])
    model.model_validate(resource)
    check_value_sets(resource)
    return resource


def _codings(concept: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(concept.get("coding", []))


def _quantity_ok(q: Mapping[str, Any]) -> None:
    assert q["system"] == t.UCUM, q
    assert q["code"] in UCUM_CODES, q
    assert q["unit"] == t.UCUM_DISPLAY[q["code"]], q
    assert isinstance(q["value"], int | float), q
    assert not isinstance(q["value"], bool), q


def _references(resource: Resource) -> Iterator[tuple[str, str]]:
    for (rtype, element), _targets in REFERENCE_TARGETS.items():
        if rtype != resource["resourceType"] or element not in resource:
            continue
        values = resource[element]
        for ref in values if isinstance(values, list) else [values]:
            yield element, ref["reference"]


def check_value_sets(resource: Resource) -> None:
    rtype = resource["resourceType"]
    if "id" in resource:
        assert ID.match(resource["id"]), resource["id"]
    for element, ref in _references(resource):
        target, _, target_id = ref.partition("/")
        assert target in REFERENCE_TARGETS[(rtype, element)], (rtype, element, ref)
        assert ID.match(target_id), ref
    for quantity in _all_quantities(resource):
        _quantity_ok(quantity)
    if rtype == "Bundle":
        assert resource["type"] == "searchset"
        if "total" in resource:  # left out when not counted (`_total=none`)
            assert isinstance(resource["total"], int)
            assert resource["total"] >= 0
        relations = [link["relation"] for link in resource["link"]]
        assert set(relations) <= BUNDLE_LINK_RELATIONS
        assert relations.count("self") == 1
        modes = [entry["search"]["mode"] for entry in resource.get("entry", [])]
        assert modes == sorted(modes, key=lambda mode: mode != "match")  # matches first
        full_urls = [entry["fullUrl"] for entry in resource.get("entry", [])]
        assert len(full_urls) == len(set(full_urls))  # each resource once
        for entry in resource.get("entry", []):
            assert entry["search"]["mode"] in SEARCH_ENTRY_MODE
            inner = entry["resource"]
            assert entry["fullUrl"].endswith(f"/{inner['resourceType']}/{inner['id']}")
            check_value_sets(inner)
    elif rtype == "Observation":
        assert resource["status"] in OBSERVATION_STATUS
        assert resource["status"] == "final"
        for category in resource["category"]:
            for coding in _codings(category):
                assert coding["system"] == t.OBSERVATION_CATEGORY
                assert coding["code"] in OBSERVATION_CATEGORIES
                assert coding["code"] in {"survey", "exam"}
        systems = [c["system"] for c in _codings(resource["code"])]
        assert t.INSTRUMENT_SYSTEM in systems
        for coding in _codings(resource["code"]):
            if coding["system"] == t.LOINC:
                assert coding["code"] in LOINC_CODES
                assert loinc_check_digit_ok(coding["code"]), coding
    elif rtype == "Procedure":
        assert resource["status"] in EVENT_STATUS
        assert resource["status"] == "completed"
        assert {c["system"] for c in _codings(resource["code"])} == {t.PROCEDURE_SYSTEM}
    elif rtype == "CarePlan":
        assert resource["status"] in REQUEST_STATUS
        assert resource["intent"] in CARE_PLAN_INTENT
        for activity in resource["activity"]:
            detail = activity["detail"]
            assert detail["kind"] in CARE_PLAN_ACTIVITY_KIND
            assert detail["status"] in CARE_PLAN_ACTIVITY_STATUS
            repeat = detail["scheduledTiming"]["repeat"]
            assert repeat["periodUnit"] in UNITS_OF_TIME
            assert repeat["periodUnit"] == "wk"
            assert isinstance(repeat["frequency"], int)
            assert repeat["frequency"] >= 1
            assert repeat["period"] > 0
    elif rtype == "Patient":
        if "gender" in resource:
            assert resource["gender"] in GENDER
    elif rtype == "OperationOutcome":
        assert resource["issue"]
        for issue in resource["issue"]:
            assert issue["severity"] in ISSUE_SEVERITY
            assert issue["code"] in ISSUE_TYPE


def _all_quantities(node: Any) -> Iterator[Mapping[str, Any]]:
    """Every valueQuantity in a resource (not descending into a Bundle's entries)."""
    if isinstance(node, dict):
        if node.get("resourceType") == "Bundle":
            return
        for key, value in node.items():
            if key == "valueQuantity":
                yield value
            else:
                yield from _all_quantities(value)
    elif isinstance(node, list):
        for item in node:
            yield from _all_quantities(item)


def fhir_body(response: httpx.Response, status: int = 200) -> Resource:
    """The response is `application/fhir+json` with ``status``; its body validates."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON), response.headers
    body: Resource = response.json()
    return assert_valid(body)


def assert_outcome(response: httpx.Response, status: int, code: str) -> Resource:
    """An OperationOutcome with ``status`` whose first issue has ``code``."""
    body = fhir_body(response, status)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code, body
    assert body["issue"][0]["diagnostics"]
    return body


async def fhir_get(
    client: httpx.AsyncClient, path: str, status: int = 200, **params: Any
) -> Resource:
    response = await client.get(f"/fhir/R4/{path.lstrip('/')}", params=params or None)
    return fhir_body(response, status)


async def walk(client: httpx.AsyncClient, path: str, **params: Any) -> list[Resource]:
    """Every page of a search, following `next` links; the bundles, each validated."""
    bundles = [await fhir_get(client, path, **params)]
    while True:
        links = {link["relation"]: link["url"] for link in bundles[-1]["link"]}
        if "next" not in links:
            return bundles
        bundles.append(fhir_body(await client.get(links["next"])))


def entries(bundle: Resource, resource_type: str | None = None) -> list[Resource]:
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if resource_type is None or e["resource"]["resourceType"] == resource_type
    ]
