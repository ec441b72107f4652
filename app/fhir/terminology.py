"""Every URI, code and display this service emits in FHIR, in one place.

The service's own code systems and extensions live under one base URI. It must stay stable:
EHRs store these systems next to the data they pull, so changing it breaks their queries.
"""

from __future__ import annotations

from typing import Final

# The base of this service's own FHIR definitions (code systems, extensions, naming systems).
SERVICE_BASE: Final = "https://outcomes.example/fhir"
CODE_SYSTEM_BASE: Final = f"{SERVICE_BASE}/CodeSystem"
EXTENSION_BASE: Final = f"{SERVICE_BASE}/StructureDefinition"

# Observation.code: every observation carries the instrument in this system (plus LOINC where
# one exists); `code=` searches accept it.
INSTRUMENT_SYSTEM: Final = f"{CODE_SYSTEM_BASE}/instrument"
# Procedure.code and CarePlan.activity.detail.code: ozone infiltration by technique.
PROCEDURE_SYSTEM: Final = f"{CODE_SYSTEM_BASE}/procedure"
# Observation context (rest, movement, night, morning), treatment phase, adjustment mode.
CONTEXT_SYSTEM: Final = f"{CODE_SYSTEM_BASE}/observation-context"
PHASE_SYSTEM: Final = f"{CODE_SYSTEM_BASE}/course-phase"
# Patient.identifier for the clinic's own identifier (`external_id`, the MRN): the default of
# OUTCOMES_FHIR_IDENTIFIER_SYSTEM (app/core/config.py, which cannot import this module; a test
# keeps the two equal). The system a server emits is its setting's, never this constant.
PATIENT_IDENTIFIER_SYSTEM: Final = f"{SERVICE_BASE}/NamingSystem/patient-external-id"
# The one subscription topic (app/push/fhir.py): a course's (CarePlan's) frequency changed.
SUBSCRIPTION_TOPIC_URL: Final = f"{SERVICE_BASE}/SubscriptionTopic/careplan-frequency"

# Extensions (each carries one value of the business record that FHIR R4 has no element for).
EXT_OBSERVATION_CONTEXT: Final = f"{EXTENSION_BASE}/observation-context"  # valueCode
EXT_OZONE_CONCENTRATION: Final = f"{EXTENSION_BASE}/ozone-concentration"  # valueQuantity ug/mL
EXT_OZONE_VOLUME: Final = f"{EXTENSION_BASE}/ozone-volume"  # valueQuantity mL
EXT_INJECTION_POINTS: Final = f"{EXTENSION_BASE}/injection-points"  # valueInteger
EXT_PAIN_BEFORE: Final = f"{EXTENSION_BASE}/pain-before"  # valueQuantity {score}, 0–10 NRS
EXT_PAIN_AFTER: Final = f"{EXTENSION_BASE}/pain-after"  # valueQuantity {score}, 0–10 NRS
EXT_SESSION_NUMBER: Final = f"{EXTENSION_BASE}/session-number"  # valueInteger, 1, 2, …
EXT_COURSE_PHASE: Final = f"{EXTENSION_BASE}/course-phase"  # valueCoding (PHASE_SYSTEM)
EXT_SESSIONS_DONE: Final = f"{EXTENSION_BASE}/sessions-done"  # valueInteger
EXT_FREQUENCY_ADJUSTMENT: Final = f"{EXTENSION_BASE}/frequency-adjustment"  # valueCode auto|confirm

# External terminologies.
LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
IDENTIFIER_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
# CapabilityStatement.rest.security: the service (SMART-on-FHIR) and where its OAuth
# endpoints are (the SMART extension, read by clients such as fhirclient).
RESTFUL_SECURITY_SERVICE: Final = "http://terminology.hl7.org/CodeSystem/restful-security-service"
SMART_OAUTH_URIS: Final = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

# LOINC long common names of the codes the instrument catalogue uses (verified on loinc.org).
# A catalogue code missing here is still emitted, without a display.
LOINC_DISPLAY: Final[dict[str, str]] = {
    "72514-3": "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
    "97909-6": "Oswestry disability index score ODI",
}

# Human-readable forms of the catalogue's UCUM codes (Quantity.unit; Quantity.code is UCUM).
UCUM_DISPLAY: Final[dict[str, str]] = {
    "{score}": "score",
    "mm": "mm",
    "%": "%",
    "cm": "cm",
    "deg": "°",
    "ug/mL": "µg/mL",
    "mL": "mL",
}

CATEGORY_DISPLAY: Final[dict[str, str]] = {"survey": "Survey", "exam": "Exam"}

# Course status → CarePlan.status (RequestStatus) and activity.detail.status
# (CarePlanActivityStatus). A discontinued course is a plan withdrawn before completion.
CARE_PLAN_STATUS: Final[dict[str, str]] = {
    "active": "active",
    "paused": "on-hold",
    "completed": "completed",
    "discontinued": "revoked",
}
ACTIVITY_STATUS: Final[dict[str, str]] = {
    "active": "in-progress",  # "scheduled" until the first session (see mapping)
    "paused": "on-hold",
    "completed": "completed",
    "discontinued": "stopped",
}

PROCEDURE_TECHNIQUES: Final = ("intramuscular", "paravertebral", "subcutaneous", "intra-articular")
GENERIC_PROCEDURE_CODE: Final = "ozone-infiltration"
