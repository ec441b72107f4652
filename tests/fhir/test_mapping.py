"""The mapping functions alone: rows built in memory, no database, no HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from app.courses.frequency import ALLOWED_SESSIONS_PER_WEEK
from app.courses.models import Course
from app.fhir import mapping
from app.fhir import terminology as t
from app.observations.catalogue import CATALOGUE
from app.observations.models import Observation
from app.patients.models import Patient
from app.treatment_sessions.models import TreatmentSession
from tests.fhir.support import assert_valid, loinc_check_digit_ok

NOW = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
SYSTEM = t.PATIENT_IDENTIFIER_SYSTEM


def _patient(**fields: Any) -> Patient:
    base: dict[str, Any] = {"id": uuid.uuid4(), "created_at": NOW, "updated_at": NOW}
    return Patient(**(base | fields))


def _course(**fields: Any) -> Course:
    base: dict[str, Any] = {
        "id": uuid.uuid4(),
        "patient_id": uuid.uuid4(),
        "indication": "post-discectomy pain",
        "region": "lumbar",
        "technique": "paravertebral",
        "start_date": date(2026, 2, 1),
        "sessions_per_week": 3,
        "adjustment": "auto",
        "max_sessions": None,
        "status": "active",
        "phase": "induction",
        "sessions_done": 2,
        "notes": None,
        "created_at": NOW,
        "updated_at": NOW,
    }
    return Course(**(base | fields))


def _session(**fields: Any) -> TreatmentSession:
    base: dict[str, Any] = {
        "id": uuid.uuid4(),
        "course_id": uuid.uuid4(),
        "patient_id": uuid.uuid4(),
        "number": 1,
        "performed_at": NOW,
        "technique": "paravertebral",
        "sites": [],
        "ozone_concentration_ug_ml": None,
        "volume_ml": None,
        "injection_points": None,
        "pain_before": None,
        "pain_after": None,
        "adverse_events": [],
        "notes": None,
        "created_at": NOW,
    }
    return TreatmentSession(**(base | fields))


def _observation(**fields: Any) -> Observation:
    base: dict[str, Any] = {
        "id": uuid.uuid4(),
        "patient_id": uuid.uuid4(),
        "instrument": "pain-nrs",
        "value": 5.0,
        "recorded_at": NOW - timedelta(hours=1),
        "received_at": NOW,
        "course_id": None,
        "session_id": None,
        "context": None,
        "source": None,
        "note": None,
    }
    return Observation(**(base | fields))


def test_instants_are_utc_with_microseconds() -> None:
    assert mapping.instant(NOW) == "2026-03-01T09:30:15.123456Z"
    whole = datetime(2026, 3, 1, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    assert mapping.instant(whole) == "2026-03-01T09:00:00.000000Z"
    with pytest.raises(ValueError, match="naive"):
        mapping.instant(datetime(2026, 3, 1))


@pytest.mark.parametrize("per_week", ALLOWED_SESSIONS_PER_WEEK)
def test_every_frequency_a_course_can_hold_maps_to_a_valid_care_plan(per_week: int) -> None:
    """The column holds a whole number from 1 to 7 (its CHECK): each one is a valid
    Timing.repeat, `per_week` sessions a period of one week."""
    repeat = mapping.weekly_repeat(per_week)
    assert repeat == {"frequency": per_week, "period": 1, "periodUnit": "wk"}
    resource = assert_valid(mapping.care_plan_to_fhir(_course(sessions_per_week=per_week)))
    assert resource["activity"][0]["detail"]["scheduledTiming"]["repeat"] == repeat


@pytest.mark.parametrize(
    ("status", "sessions_done", "plan_status", "activity_status"),
    [
        ("active", 0, "active", "scheduled"),
        ("active", 3, "active", "in-progress"),
        ("paused", 3, "on-hold", "on-hold"),
        ("completed", 10, "completed", "completed"),
        ("discontinued", 4, "revoked", "stopped"),
    ],
)
def test_care_plan_statuses(
    status: str, sessions_done: int, plan_status: str, activity_status: str
) -> None:
    resource = assert_valid(
        mapping.care_plan_to_fhir(_course(status=status, sessions_done=sessions_done))
    )
    assert resource["status"] == plan_status
    assert resource["activity"][0]["detail"]["status"] == activity_status


def test_care_plan_with_every_field() -> None:
    course = _course(sessions_per_week=2, max_sessions=12, notes="check BP", phase="consolidation")
    resource = assert_valid(mapping.care_plan_to_fhir(course))
    detail = resource["activity"][0]["detail"]
    assert detail["scheduledTiming"]["repeat"] == {
        "frequency": 2,
        "period": 1,
        "periodUnit": "wk",
        "count": 12,
    }
    assert detail["kind"] == "ServiceRequest"
    assert detail["code"]["coding"][0]["code"] == "ozone-paravertebral"
    assert resource["note"] == [{"text": "check BP"}]
    extensions = {e["url"]: e for e in resource["extension"]}
    assert extensions[t.EXT_COURSE_PHASE]["valueCoding"]["code"] == "consolidation"
    assert extensions[t.EXT_SESSIONS_DONE]["valueInteger"] == 2
    assert extensions[t.EXT_FREQUENCY_ADJUSTMENT]["valueCode"] == "auto"
    assert resource["meta"]["lastUpdated"] == "2026-03-01T09:30:15.123456Z"


@pytest.mark.parametrize("sex", ["female", "male", "other", "unknown"])
def test_patient_gender_is_the_sex(sex: str) -> None:
    resource = mapping.patient_to_fhir(_patient(sex=sex), identifier_system=SYSTEM)
    assert assert_valid(resource)["gender"] == sex


def test_patient_with_no_optional_fields_is_valid() -> None:
    patient = _patient()
    resource = assert_valid(mapping.patient_to_fhir(patient, identifier_system=SYSTEM))
    assert resource == {
        "resourceType": "Patient",
        "id": str(patient.id),
        "meta": {"lastUpdated": "2026-03-01T09:30:15.123456Z"},
    }


def test_the_mrn_is_an_identifier_in_the_system_the_server_is_given() -> None:
    patient = _patient(external_id="MRN|7,1")
    resource = assert_valid(mapping.patient_to_fhir(patient, identifier_system="urn:oid:1.2.3"))
    [identifier] = resource["identifier"]
    assert identifier["system"] == "urn:oid:1.2.3"
    assert identifier["value"] == "MRN|7,1"  # as stored: escapes belong to search values only
    assert identifier["type"]["coding"][0]["code"] == "MR"


def _expected_category(kind: str, source: str | None) -> str:
    return "survey" if kind in ("pain", "function") or source == "patient" else "exam"


@pytest.mark.parametrize("instrument", CATALOGUE, ids=lambda ins: ins.code)
@pytest.mark.parametrize("source", [None, "patient", "clinician", "device"])
def test_every_instrument_and_source(instrument: Any, source: str | None) -> None:
    value = instrument.max if instrument.integer else instrument.max / 3
    resource = assert_valid(
        mapping.observation_to_fhir(
            _observation(instrument=instrument.code, value=value, source=source)
        )
    )
    category = resource["category"][0]["coding"][0]["code"]
    assert category == _expected_category(instrument.kind, source)
    codings = resource["code"]["coding"]
    assert codings[-1] == {
        "system": t.INSTRUMENT_SYSTEM,
        "code": instrument.code,
        "display": instrument.name,
    }
    loinc = [c for c in codings if c["system"] == t.LOINC]
    assert [c["code"] for c in loinc] == ([instrument.loinc] if instrument.loinc else [])
    quantity = resource["valueQuantity"]
    assert quantity["code"] == instrument.unit
    assert quantity["system"] == t.UCUM
    assert quantity["value"] == pytest.approx(value)
    assert ("performer" in resource) == (source == "patient")


def test_pain_nrs_carries_loinc_72514_3() -> None:
    resource = mapping.observation_to_fhir(_observation(instrument="pain-nrs", value=4.0))
    loinc = resource["code"]["coding"][0]
    assert loinc == {
        "system": "http://loinc.org",
        "code": "72514-3",
        "display": "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
    }
    assert resource["valueQuantity"] == {
        "value": 4,
        "unit": "score",
        "system": "http://unitsofmeasure.org",
        "code": "{score}",
    }


def test_loinc_check_digits() -> None:
    assert loinc_check_digit_ok("72514-3")
    assert loinc_check_digit_ok("97909-6")
    assert not loinc_check_digit_ok("72514-4")
    assert all(loinc_check_digit_ok(ins.loinc) for ins in CATALOGUE if ins.loinc)


def test_observation_links_course_and_session() -> None:
    course_id, session_id = uuid.uuid4(), uuid.uuid4()
    resource = assert_valid(
        mapping.observation_to_fhir(
            _observation(course_id=course_id, session_id=session_id, context="night", note="n")
        )
    )
    assert resource["basedOn"] == [{"reference": f"CarePlan/{course_id}"}]
    assert resource["partOf"] == [{"reference": f"Procedure/{session_id}"}]
    assert resource["extension"] == [{"url": t.EXT_OBSERVATION_CONTEXT, "valueCode": "night"}]
    assert resource["note"] == [{"text": "n"}]


def test_procedure_minimal_and_unknown_technique() -> None:
    resource = assert_valid(mapping.procedure_to_fhir(_session(technique="dry needling")))
    assert resource["code"] == {
        "coding": [
            {
                "system": t.PROCEDURE_SYSTEM,
                "code": "ozone-infiltration",
                "display": "Oxygen-ozone infiltration",
            }
        ],
        "text": "Oxygen-ozone infiltration (dry needling)",
    }
    assert "bodySite" not in resource
    assert "complication" not in resource
    assert resource["extension"] == [{"url": t.EXT_SESSION_NUMBER, "valueInteger": 1}]
    none = assert_valid(mapping.procedure_to_fhir(_session(technique=None)))
    assert none["code"]["text"] == "Oxygen-ozone infiltration"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "invalid"),
        (401, "login"),
        (403, "forbidden"),
        (404, "not-found"),
        (405, "not-supported"),
        (406, "not-supported"),
        (409, "conflict"),
        (413, "too-costly"),
        (422, "invalid"),
        (429, "throttled"),
        (418, "processing"),
        (500, "exception"),
        (503, "transient"),
    ],
)
def test_operation_outcome_codes(status: int, code: str) -> None:
    outcome = assert_valid(mapping.operation_outcome(status, ["why"]))
    assert outcome["issue"] == [
        {"severity": "error" if status < 500 else "fatal", "code": code, "diagnostics": "why"}
    ]


def test_searchset_without_entries() -> None:
    bundle = assert_valid(
        mapping.searchset(
            base_url="https://x/fhir/R4",
            resources=[],
            total=0,
            self_url="https://x/fhir/R4/Observation?_count=50",
            next_url=None,
            now=NOW,
        )
    )
    assert "entry" not in bundle
    assert bundle["link"] == [
        {"relation": "self", "url": "https://x/fhir/R4/Observation?_count=50"}
    ]


def test_a_searchset_lists_matches_then_includes_and_may_leave_the_total_out() -> None:
    observation, patient = _observation(), _patient()
    bundle = assert_valid(
        mapping.searchset(
            base_url="https://x/fhir/R4",
            resources=[mapping.observation_to_fhir(observation)],
            included=[mapping.patient_to_fhir(patient, identifier_system=SYSTEM)],
            total=None,
            self_url="https://x/fhir/R4/Observation?_total=none&_count=50",
            next_url=None,
            now=NOW,
        )
    )
    assert "total" not in bundle
    assert [(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]] == [
        ("Observation", "match"),
        ("Patient", "include"),
    ]
    assert bundle["entry"][1]["fullUrl"] == f"https://x/fhir/R4/Patient/{patient.id}"


def test_to_fhir_and_last_updated_dispatch_by_row_type() -> None:
    later = NOW + timedelta(days=1)
    rows: list[mapping.Row] = [
        _patient(updated_at=later),
        _course(updated_at=later),
        _session(created_at=later),
        _observation(received_at=later),
    ]
    for row, resource_type in zip(
        rows, ["Patient", "CarePlan", "Procedure", "Observation"], strict=True
    ):
        assert mapping.resource_type_of(row) == resource_type
        assert mapping.last_updated(row) == later
        resource = assert_valid(mapping.to_fhir(row, identifier_system=SYSTEM))
        assert resource["resourceType"] == resource_type
        assert resource["meta"]["lastUpdated"] == mapping.instant(later)
