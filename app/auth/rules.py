"""Who may do what: one table of rules, keyed by method and route template.

A route without a rule is refused (403) rather than left open, and the role × route test
matrix is generated from this table and the application's own route table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from app.auth.principal import Principal

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


def _r(*roles: Role) -> frozenset[Role]:
    return frozenset(roles)


API = "/api/v1"
FHIR = "/fhir/R4"
FHIR_READERS: frozenset[Role] = frozenset({"admin", "integration", "patient"})
BULK_EXPORTERS: frozenset[Role] = frozenset({"admin", "integration"})
RULES: dict[tuple[str, str], Rule] = {
    ("GET", f"{API}/instruments"): Rule(ALL, "read", "instrument", audit=False),
    ("POST", f"{API}/patients"): Rule(STAFF, "create", "patient"),
    ("GET", f"{API}/patients"): Rule(_r("admin", "clinician", "integration"), "read", "patient"),
    ("GET", f"{API}/patients/{{patient_id}}"): Rule(
        _r("admin", "clinician", "integration", "patient"), "read", "patient", "patient"
    ),
    ("PATCH", f"{API}/patients/{{patient_id}}"): Rule(STAFF, "update", "patient", "patient"),
    ("POST", f"{API}/patients/{{patient_id}}/courses"): Rule(STAFF, "create", "course", "patient"),
    ("GET", f"{API}/patients/{{patient_id}}/courses"): Rule(
        _r("admin", "clinician", "patient"), "read", "course", "patient"
    ),
    ("GET", f"{API}/courses/{{course_id}}"): Rule(
        _r("admin", "clinician", "patient"), "read", "course", "course"
    ),
    ("PATCH", f"{API}/courses/{{course_id}}"): Rule(STAFF, "update", "course", "course"),
    ("POST", f"{API}/courses/{{course_id}}/frequency"): Rule(STAFF, "update", "course", "course"),
    ("GET", f"{API}/courses/{{course_id}}/frequency-history"): Rule(
        _r("admin", "clinician", "patient"), "read", "frequency-history", "course"
    ),
    ("POST", f"{API}/courses/{{course_id}}/sessions"): Rule(STAFF, "create", "session", "course"),
    ("GET", f"{API}/courses/{{course_id}}/sessions"): Rule(
        _r("admin", "clinician", "patient"), "read", "session", "course"
    ),
    ("POST", f"{API}/patients/{{patient_id}}/observations"): Rule(
        _r("admin", "clinician", "patient"), "create", "observation", "patient"
    ),
    ("POST", f"{API}/patients/{{patient_id}}/observations/batch"): Rule(
        _r("admin", "clinician", "patient"), "create", "observation", "patient"
    ),
    ("GET", f"{API}/patients/{{patient_id}}/observations"): Rule(
        _r("admin", "clinician", "patient"), "read", "observation", "patient"
    ),
    ("GET", f"{API}/patients/{{patient_id}}/trends"): Rule(
        _r("admin", "clinician", "dashboard", "patient"), "read", "trend", "patient"
    ),
    ("GET", f"{API}/courses/{{course_id}}/recommendation"): Rule(
        _r("admin", "clinician", "patient"), "read", "recommendation", "course"
    ),
    ("GET", f"{API}/patients/{{patient_id}}/summary"): Rule(
        _r("admin", "clinician", "integration", "patient"), "read", "summary", "patient"
    ),
    ("GET", f"{API}/cohort/summary"): Rule(_r("admin", "clinician", "dashboard"), "read", "cohort"),
    ("POST", f"{API}/tokens"): Rule(_r("admin"), "create", "token"),
    ("GET", f"{API}/tokens"): Rule(_r("admin"), "read", "token"),
    ("DELETE", f"{API}/tokens/{{token_id}}"): Rule(_r("admin"), "delete", "token"),
    ("POST", f"{API}/clients"): Rule(_r("admin"), "create", "client"),
    ("GET", f"{API}/clients"): Rule(_r("admin"), "read", "client"),
    ("DELETE", f"{API}/clients/{{client_id}}"): Rule(_r("admin"), "delete", "client"),
    ("GET", f"{API}/audit"): Rule(_r("admin"), "read", "audit"),
    # FHIR R4 (API.md: integration and admin tokens read FHIR; a patient its own compartment).
    # Searches without `patient` cover every patient, so a patient token must name its own.
    ("GET", f"{FHIR}/metadata"): Rule(ALL, "read", "capability-statement", audit=False),
    ("GET", f"{FHIR}/Patient/{{patient_id}}"): Rule(FHIR_READERS, "read", "patient", "patient"),
    ("GET", f"{FHIR}/Patient/{{patient_id}}/$everything"): Rule(
        FHIR_READERS, "export", "patient-record", "patient"
    ),
    ("GET", f"{FHIR}/Observation"): Rule(FHIR_READERS, "read", "observation", "patient-query"),
    ("GET", f"{FHIR}/Procedure"): Rule(FHIR_READERS, "read", "session", "patient-query"),
    ("GET", f"{FHIR}/CarePlan"): Rule(FHIR_READERS, "read", "course", "patient-query"),
    # Bulk Data export (app/fhir/export.py): every patient's data, so never a patient token.
    # A job is its starting token's (or an admin's) alone: others get a 404 from the handler.
    ("GET", f"{FHIR}/$export"): Rule(BULK_EXPORTERS, "export", "bulk-export"),
    ("GET", f"{FHIR}/Patient/$export"): Rule(BULK_EXPORTERS, "export", "bulk-export"),
    ("GET", f"{FHIR}/$export-status/{{job_id}}"): Rule(BULK_EXPORTERS, "read", "bulk-export"),
    ("DELETE", f"{FHIR}/$export-status/{{job_id}}"): Rule(BULK_EXPORTERS, "delete", "bulk-export"),
    ("GET", f"{FHIR}/$export-file/{{job_id}}/{{resource_type}}.ndjson"): Rule(
        BULK_EXPORTERS, "export", "bulk-export"
    ),
}


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
