"""Who may do what: one table of rules, keyed by method and route template.

A route without a rule is refused (403) rather than left open, and the role × route test
matrix is generated from this table and the application's own route table. Each rule also
says what a token's SMART scopes must grant for it (`needs`, app/auth/scopes.py): a token
issued at /oauth/token is bounded by its scopes as well as its role. Open routes (discovery:
no patient data) say so with `open=True`: no token is asked for, none is looked up.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from app.auth.principal import Principal
from app.auth.scopes import (
    ADMINISTRATION,
    NO_DATA,
    READ_EVERY_TYPE,
    Needs,
    needs,
)

Role = Literal["admin", "clinician", "patient", "integration", "dashboard"]
Action = Literal["read", "create", "update", "delete", "export"]
# How a request names the patient it concerns: a path's patient_id, a course's patient, a
# FHIR search's `patient` query parameter (`Patient/<id>` or `<id>`), or none.
Scope = Literal["patient", "course", "patient-query", "none"]

ALL: frozenset[Role] = frozenset({"admin", "clinician", "patient", "integration", "dashboard"})
STAFF: frozenset[Role] = frozenset({"admin", "clinician"})


@dataclass(frozen=True, slots=True)
class Rule:
    roles: frozenset[Role]
    action: Action
    resource: str
    scope: Scope = "none"
    audit: bool = True  # False only for data that is not about a patient (the catalogue)
    # What a scoped token's SMART scopes must grant; None (no mapping yet) refuses every
    # scoped token, and tests/auth/test_access_matrix.py fails until the rule names its needs.
    needs: Needs | None = None
    # No token asked for (any sent is ignored), never audited: discovery, no patient data.
    open: bool = False


def _r(*roles: Role) -> frozenset[Role]:
    return frozenset(roles)


API = "/api/v1"
FHIR = "/fhir/R4"
FHIR_READERS: frozenset[Role] = frozenset({"admin", "integration", "patient"})
BULK_EXPORTERS: frozenset[Role] = frozenset({"admin", "integration"})
SUBSCRIBERS: frozenset[Role] = frozenset({"admin", "integration"})
ADMINS = _r("admin")
# What a summary or a patient's whole record holds: read of every type in it.
SUMMARY = READ_EVERY_TYPE
# Bulk Data: read of the types the kick-off's `_type` names (all when absent), of the type the
# file is; a job's status names no patient data (and is its starting token's alone).
EXPORT = Needs(types_named_by="_type")
EXPORT_FILE = Needs(types_named_by="resource_type")
# Rules and their scope needs, one row each (`# fmt: off` keeps the rows readable as a table).
# fmt: off
RULES: dict[tuple[str, str], Rule] = {
    ("GET", f"{API}/instruments"): Rule(ALL, "read", "instrument", audit=False, needs=NO_DATA),
    ("POST", f"{API}/patients"): Rule(STAFF, "create", "patient", needs=needs("Patient.c")),
    ("GET", f"{API}/patients"): Rule(
        _r("admin", "clinician", "integration"), "read", "patient", needs=needs("Patient.s")),
    ("GET", f"{API}/patients/{{patient_id}}"): Rule(
        _r("admin", "clinician", "integration", "patient"), "read", "patient", "patient",
        needs=needs("Patient.r")),
    ("PATCH", f"{API}/patients/{{patient_id}}"): Rule(
        STAFF, "update", "patient", "patient", needs=needs("Patient.u")),
    ("POST", f"{API}/patients/{{patient_id}}/courses"): Rule(
        STAFF, "create", "course", "patient", needs=needs("CarePlan.c")),
    ("GET", f"{API}/patients/{{patient_id}}/courses"): Rule(
        _r("admin", "clinician", "patient"), "read", "course", "patient",
        needs=needs("CarePlan.s")),
    ("GET", f"{API}/courses/{{course_id}}"): Rule(
        _r("admin", "clinician", "patient"), "read", "course", "course",
        needs=needs("CarePlan.r")),
    ("PATCH", f"{API}/courses/{{course_id}}"): Rule(
        STAFF, "update", "course", "course", needs=needs("CarePlan.u")),
    ("POST", f"{API}/courses/{{course_id}}/frequency"): Rule(
        STAFF, "update", "course", "course", needs=needs("CarePlan.u")),
    ("GET", f"{API}/courses/{{course_id}}/frequency-history"): Rule(
        _r("admin", "clinician", "patient"), "read", "frequency-history", "course",
        needs=needs("CarePlan.r")),
    ("POST", f"{API}/courses/{{course_id}}/sessions"): Rule(
        STAFF, "create", "session", "course", needs=needs("Procedure.c")),
    ("GET", f"{API}/courses/{{course_id}}/sessions"): Rule(
        _r("admin", "clinician", "patient"), "read", "session", "course",
        needs=needs("Procedure.s")),
    ("POST", f"{API}/patients/{{patient_id}}/observations"): Rule(
        _r("admin", "clinician", "patient"), "create", "observation", "patient",
        needs=needs("Observation.c")),
    ("POST", f"{API}/patients/{{patient_id}}/observations/batch"): Rule(
        _r("admin", "clinician", "patient"), "create", "observation", "patient",
        needs=needs("Observation.c")),
    ("GET", f"{API}/patients/{{patient_id}}/observations"): Rule(
        _r("admin", "clinician", "patient"), "read", "observation", "patient",
        needs=needs("Observation.s")),
    # A trend is computed from a patient's observations: a search of them.
    ("GET", f"{API}/patients/{{patient_id}}/trends"): Rule(
        _r("admin", "clinician", "dashboard", "patient"), "read", "trend", "patient",
        needs=needs("Observation.s")),
    ("GET", f"{API}/courses/{{course_id}}/recommendation"): Rule(
        _r("admin", "clinician", "patient"), "read", "recommendation", "course",
        needs=needs("CarePlan.r")),
    ("GET", f"{API}/patients/{{patient_id}}/summary"): Rule(
        _r("admin", "clinician", "integration", "patient"), "read", "summary", "patient",
        needs=SUMMARY),
    # Courses by status and their observations' improvement, over every patient.
    ("GET", f"{API}/cohort/summary"): Rule(
        _r("admin", "clinician", "dashboard"), "read", "cohort",
        needs=needs("CarePlan.s", "Observation.s")),
    ("POST", f"{API}/tokens"): Rule(ADMINS, "create", "token", needs=ADMINISTRATION),
    ("GET", f"{API}/tokens"): Rule(ADMINS, "read", "token", needs=ADMINISTRATION),
    ("DELETE", f"{API}/tokens/{{token_id}}"): Rule(
        ADMINS, "delete", "token", needs=ADMINISTRATION),
    ("POST", f"{API}/clients"): Rule(ADMINS, "create", "client", needs=ADMINISTRATION),
    ("GET", f"{API}/clients"): Rule(ADMINS, "read", "client", needs=ADMINISTRATION),
    ("DELETE", f"{API}/clients/{{client_id}}"): Rule(
        ADMINS, "delete", "client", needs=ADMINISTRATION),
    ("GET", f"{API}/audit"): Rule(ADMINS, "read", "audit", needs=ADMINISTRATION),
    # Discovery (SMART App Launch, "Conformance"): open, as FHIR servers serve it.
    ("GET", f"{FHIR}/metadata"): Rule(
        ALL, "read", "capability-statement", audit=False, needs=NO_DATA, open=True),
    ("GET", f"{FHIR}/.well-known/smart-configuration"): Rule(
        ALL, "read", "smart-configuration", audit=False, needs=NO_DATA, open=True),
    ("GET", "/.well-known/smart-configuration"): Rule(
        ALL, "read", "smart-configuration", audit=False, needs=NO_DATA, open=True),
    # Push (app/push): webhooks are the admins'; a delivery carries ids and values, not names.
    ("POST", f"{API}/webhooks"): Rule(ADMINS, "create", "webhook", needs=ADMINISTRATION),
    ("GET", f"{API}/webhooks"): Rule(ADMINS, "read", "webhook", needs=ADMINISTRATION),
    ("DELETE", f"{API}/webhooks/{{webhook_id}}"): Rule(
        ADMINS, "delete", "webhook", needs=ADMINISTRATION),
    ("GET", f"{API}/webhooks/{{webhook_id}}/deliveries"): Rule(
        ADMINS, "read", "webhook-delivery", needs=ADMINISTRATION),
    ("POST", f"{API}/webhooks/{{webhook_id}}/deliveries/{{delivery_id}}/resend"): Rule(
        ADMINS, "update", "webhook-delivery", needs=ADMINISTRATION),
    # Patient app enrolment (app/enrolment). Staff hand out codes and revoke devices; a
    # patient token may see its own patient's devices (they are that patient's data, read as
    # part of the Patient) but not revoke them: a stolen phone's token could otherwise sign the
    # patient's own phone out.
    ("POST", f"{API}/patients/{{patient_id}}/enrolments"): Rule(
        STAFF, "create", "enrolment", "patient", needs=ADMINISTRATION),
    ("GET", f"{API}/patients/{{patient_id}}/devices"): Rule(
        _r("admin", "clinician", "patient"), "read", "device", "patient",
        needs=needs("Patient.r")),
    ("DELETE", f"{API}/patients/{{patient_id}}/devices/{{device_id}}"): Rule(
        STAFF, "delete", "device", "patient", needs=ADMINISTRATION),
    # Any token may read what it is; audited, as it names a patient token's patient (the
    # handler sets it: the path names none).
    ("GET", f"{API}/me"): Rule(ALL, "read", "token", needs=NO_DATA),
    # FHIR R4 (API.md: integration and admin tokens read FHIR; a patient its own compartment).
    # Searches without `patient` cover every patient, so a patient token must name its own.
    ("GET", f"{FHIR}/Patient/{{patient_id}}"): Rule(
        FHIR_READERS, "read", "patient", "patient", needs=needs("Patient.r")),
    ("GET", f"{FHIR}/Patient/{{patient_id}}/$everything"): Rule(
        FHIR_READERS, "export", "patient-record", "patient", needs=SUMMARY),
    # A Patient search names no patient (`identifier` is an MRN): a patient token's searches
    # its own compartment, so it finds its own Patient or nothing (app/fhir/router.py).
    ("GET", f"{FHIR}/Patient"): Rule(
        FHIR_READERS, "read", "patient", needs=needs("Patient.s")),
    ("GET", f"{FHIR}/Observation"): Rule(
        FHIR_READERS, "read", "observation", "patient-query", needs=needs("Observation.s")),
    ("GET", f"{FHIR}/Procedure"): Rule(
        FHIR_READERS, "read", "session", "patient-query", needs=needs("Procedure.s")),
    ("GET", f"{FHIR}/CarePlan"): Rule(
        FHIR_READERS, "read", "course", "patient-query", needs=needs("CarePlan.s")),
    # Bulk Data export (app/fhir/export.py): every patient's data, so never a patient token.
    # A job is its starting token's (or an admin's) alone: others get a 404 from the handler.
    ("GET", f"{FHIR}/$export"): Rule(BULK_EXPORTERS, "export", "bulk-export", needs=EXPORT),
    ("GET", f"{FHIR}/Patient/$export"): Rule(
        BULK_EXPORTERS, "export", "bulk-export", needs=EXPORT),
    ("GET", f"{FHIR}/$export-status/{{job_id}}"): Rule(
        BULK_EXPORTERS, "read", "bulk-export", needs=NO_DATA),
    ("DELETE", f"{FHIR}/$export-status/{{job_id}}"): Rule(
        BULK_EXPORTERS, "delete", "bulk-export", needs=NO_DATA),
    ("GET", f"{FHIR}/$export-file/{{job_id}}/{{resource_type}}.ndjson"): Rule(
        BULK_EXPORTERS, "export", "bulk-export", needs=EXPORT_FILE),
    # Topic-based Subscriptions (app/push/fhir_router.py): a subscription is its token's (or an
    # admin's) alone, and carries only patients that token may read: the CarePlans it tells of.
    ("GET", f"{FHIR}/SubscriptionTopic"): Rule(
        SUBSCRIBERS, "read", "subscription-topic", audit=False, needs=NO_DATA),
    ("POST", f"{FHIR}/Subscription"): Rule(
        SUBSCRIBERS, "create", "subscription", needs=needs("CarePlan.r")),
    ("GET", f"{FHIR}/Subscription/{{subscription_id}}"): Rule(
        SUBSCRIBERS, "read", "subscription", needs=needs("CarePlan.r")),
    ("DELETE", f"{FHIR}/Subscription/{{subscription_id}}"): Rule(
        SUBSCRIBERS, "delete", "subscription", needs=needs("CarePlan.r")),
    ("GET", f"{FHIR}/Subscription/{{subscription_id}}/$status"): Rule(
        SUBSCRIBERS, "read", "subscription", needs=needs("CarePlan.r")),
}
# fmt: on


@dataclass(slots=True)
class AccessRecord:
    """What the audit trail records about this request (set by `authorize`)."""

    rule: Rule
    request_id: str
    principal: Principal | None = None
    resource_id: str | None = None
    patient_id: uuid.UUID | None = None
    outcome: Literal["allowed", "denied"] = "denied"
    # Set when the request's own write statement also stored its audit row
    # (app/recording/pg_store.py): the commit hooks then have nothing left to do.
    written: bool = False
