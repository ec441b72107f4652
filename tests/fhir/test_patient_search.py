"""`GET /fhir/R4/Patient?identifier=[system|]value`: patients by their MRN (`external_id`), in the
system OUTCOMES_FHIR_IDENTIFIER_SYSTEM names; and who finds whom.

Admin and integration tokens search every patient. A patient token searches its own
compartment: it finds its own Patient or nothing, and an MRN of another patient answers exactly
as an MRN nobody has (an empty Bundle), so a search reveals no other patient's existence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.fhir import terminology as t
from tests.factories import API, create_patient
from tests.fhir.support import RoleClient, assert_outcome, entries, fhir_body, fhir_get
from tests.support import Issue, client_of, running

SYSTEM = t.PATIENT_IDENTIFIER_SYSTEM
ESCAPED_MRN = "A,B|C"  # a value with FHIR's separators in it


@dataclass
class Registry:
    ids: dict[str, str]  # MRN (or "none") -> patient id


@pytest.fixture
async def registry(client: httpx.AsyncClient) -> Registry:
    ids = {}
    for mrn in ("MRN-1", "MRN-2", ESCAPED_MRN):
        ids[mrn] = (await create_patient(client, external_id=mrn, name=f"Patient {mrn}"))["id"]
    ids["none"] = (await create_patient(client, name="Without an MRN"))["id"]
    return Registry(ids)


async def found(reader: httpx.AsyncClient, **params: Any) -> list[str]:
    bundle = await fhir_get(reader, "Patient", **params)
    assert bundle["total"] == len(entries(bundle))
    return sorted(resource["id"] for resource in entries(bundle, "Patient"))


def ids_of(registry: Registry, *mrns: str) -> list[str]:
    return sorted(registry.ids[mrn] for mrn in mrns)


@pytest.mark.parametrize(
    ("identifier", "mrns"),
    [
        ("MRN-1", ["MRN-1"]),  # a value alone: in any system, so in ours
        (f"{SYSTEM}|MRN-1", ["MRN-1"]),
        ("urn:oid:2.16.840.1.113883.4.1|MRN-1", []),  # another system: not ours
        ("|MRN-1", []),  # an identifier without a system: ours always has one
        ("MRN-1,MRN-2", ["MRN-1", "MRN-2"]),  # a comma: alternatives
        (f"{SYSTEM}|MRN-2,urn:oid:1.2.3|MRN-1", ["MRN-2"]),
        (f"{SYSTEM}|", ["MRN-1", "MRN-2", ESCAPED_MRN]),  # every patient with an MRN
        ("mrn-1", []),  # exact, not case-insensitive: an MRN is a code
        ("MRN", []),  # nor a prefix
        ("MRN-9", []),
        (r"A\,B\|C", [ESCAPED_MRN]),  # FHIR's escapes
        (rf"{SYSTEM}|A\,B\|C", [ESCAPED_MRN]),
        ("A,B|C", []),  # unescaped: `A`, or `C` in the system `B`
    ],
)
async def test_identifier_finds_patients_by_mrn(
    registry: Registry, ehr: httpx.AsyncClient, identifier: str, mrns: list[str]
) -> None:
    assert await found(ehr, identifier=identifier) == ids_of(registry, *mrns)


async def test_repeated_identifiers_must_all_hold(
    registry: Registry, ehr: httpx.AsyncClient
) -> None:
    assert await found(ehr, identifier=["MRN-1,MRN-2", f"{SYSTEM}|MRN-2"]) == ids_of(
        registry, "MRN-2"
    )
    assert await found(ehr, identifier=["MRN-1", "MRN-2"]) == []


async def test_the_patient_carries_the_identifier_it_is_found_by(
    registry: Registry, ehr: httpx.AsyncClient
) -> None:
    bundle = await fhir_get(ehr, "Patient", identifier=f"{SYSTEM}|MRN-1")
    [patient] = entries(bundle)
    [identifier] = patient["identifier"]
    assert (identifier["system"], identifier["value"]) == (SYSTEM, "MRN-1")
    assert identifier["type"]["coding"][0]["code"] == "MR"
    assert bundle["entry"][0]["search"]["mode"] == "match"
    assert patient == await fhir_get(ehr, f"Patient/{registry.ids['MRN-1']}")


async def test_without_filters_every_patient_and_by_last_updated(
    registry: Registry, client: httpx.AsyncClient, ehr: httpx.AsyncClient
) -> None:
    assert await found(ehr) == sorted(registry.ids.values())
    newest = max(r["meta"]["lastUpdated"] for r in entries(await fhir_get(ehr, "Patient")))
    assert await found(ehr, _lastUpdated=f"gt{newest}") == []
    changed = await client.patch(f"{API}/patients/{registry.ids['none']}", json={"name": "New"})
    assert changed.status_code == 200
    assert await found(ehr, _lastUpdated=f"gt{newest}") == [registry.ids["none"]]
    bundle = await fhir_get(ehr, "Patient", _sort="-_lastUpdated", _count=1)
    assert [r["id"] for r in entries(bundle)] == [registry.ids["none"]]  # the newest change


async def test_the_server_says_which_system_it_writes_mrns_in(
    settings: Settings, issue_token: Issue
) -> None:
    """OUTCOMES_FHIR_IDENTIFIER_SYSTEM: the clinic's own system, in resources and searches."""
    clinic = "urn:oid:2.16.840.1.113883.3.7777"
    async with running(settings, fhir_identifier_system=clinic) as app:
        staff = client_of(app, await issue_token("clinician"))
        reader = client_of(app, await issue_token("integration"))
        async with staff, reader:
            patient = await create_patient(staff, external_id="MRN-77")
            read = await fhir_get(reader, f"Patient/{patient['id']}")
            assert read["identifier"][0]["system"] == clinic
            assert await found(reader, identifier=f"{clinic}|MRN-77") == [patient["id"]]
            assert await found(reader, identifier=f"{SYSTEM}|MRN-77") == []  # not the default
            assert await found(reader, identifier="MRN-77") == [patient["id"]]
            everything = await fhir_get(reader, f"Patient/{patient['id']}/$everything")
            assert entries(everything, "Patient")[0]["identifier"][0]["system"] == clinic


def test_the_identifier_system_setting_is_a_uri_a_search_can_name() -> None:
    assert Settings().fhir_identifier_system == SYSTEM  # the default: what v1 emitted
    assert Settings(fhir_identifier_system="urn:oid:1.2.3").fhir_identifier_system
    for bad in ("", "MRN", "urn:oid:1|2", "urn:a,b", "urn:a b", "http://x/\\y", "urn:$x"):
        with pytest.raises(ValidationError):
            Settings(fhir_identifier_system=bad)


# --- who finds whom ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "integration"])
async def test_admin_and_integration_tokens_search_every_patient(
    registry: Registry, as_role: RoleClient, role: str
) -> None:
    reader = await as_role(role)
    assert await found(reader) == sorted(registry.ids.values())
    assert await found(reader, identifier="MRN-2") == ids_of(registry, "MRN-2")


@pytest.mark.parametrize("role", ["clinician", "dashboard"])
async def test_clinician_and_dashboard_tokens_may_not_search_patients(
    registry: Registry, as_role: RoleClient, role: str
) -> None:
    reader = await as_role(role)
    response = await reader.get("/fhir/R4/Patient", params={"identifier": "MRN-1"})
    assert_outcome(response, 403, "forbidden")
    assert "Patient MRN-1" not in response.text


async def test_a_patient_token_finds_only_itself(registry: Registry, as_role: RoleClient) -> None:
    own = registry.ids["MRN-1"]
    patient = await as_role("patient", own)
    assert await found(patient) == [own]
    assert await found(patient, identifier="MRN-1") == [own]
    assert await found(patient, identifier=f"{SYSTEM}|MRN-1") == [own]
    assert await found(patient, identifier=f"{SYSTEM}|") == [own]
    assert await found(patient, identifier="MRN-1,MRN-2") == [own]
    counted = await fhir_get(patient, "Patient", _summary="count")
    assert counted["total"] == 1  # not the number of patients the server has


async def test_another_patients_mrn_answers_as_an_mrn_nobody_has(
    registry: Registry, as_role: RoleClient
) -> None:
    """BOLA: a patient token naming another patient's MRN gets an empty Bundle, byte for byte
    the answer for an MRN that does not exist (bar the timestamps and the self link)."""
    patient = await as_role("patient", registry.ids["MRN-1"])

    async def answer(identifier: str) -> dict[str, Any]:
        response = await patient.get("/fhir/R4/Patient", params={"identifier": identifier})
        assert "Patient MRN-2" not in response.text
        bundle = fhir_body(response)
        return {k: v for k, v in bundle.items() if k not in ("meta", "timestamp", "link")}

    for other, nobody in [("MRN-2", "MRN-9"), (f"{SYSTEM}|MRN-2", f"{SYSTEM}|MRN-9")]:
        assert (
            await answer(other)
            == await answer(nobody)
            == {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": 0,
            }
        )
    searches: list[dict[str, Any]] = [
        {"_summary": "count", "identifier": "MRN-2"},
        {"_total": "none"},
    ]
    for params in searches:
        bundle = await fhir_get(patient, "Patient", **params)
        assert [r["id"] for r in entries(bundle)] in ([], [registry.ids["MRN-1"]])
        assert bundle.get("total", 0) <= 1
    # reading the other patient directly stays a 404, as it always was
    response = await patient.get(f"/fhir/R4/Patient/{registry.ids['MRN-2']}")
    assert_outcome(response, 404, "not-found")


async def test_patient_searches_are_audited_without_naming_a_patient(
    registry: Registry, as_role: RoleClient, admin: httpx.AsyncClient
) -> None:
    """As `GET /api/v1/patients` (which also finds by external_id): the row records the read,
    and no patient, since a search may name none or several."""
    ehr = await as_role("integration")
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    response = await ehr.get("/fhir/R4/Patient", params={"identifier": "MRN-1"})
    request_id = response.headers["x-request-id"]
    audit = await admin.get(f"{API}/audit", params={"since": since, "limit": 500})
    rows = audit.json()["items"]
    [row] = [r for r in rows if r["request_id"] == request_id]
    assert (row["action"], row["resource_type"], row["patient_id"], row["outcome"]) == (
        "read",
        "patient",
        None,
        "allowed",
    )
