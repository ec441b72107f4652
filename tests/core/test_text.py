"""Every string a request brings (body, query, path) is text both databases can store: a NUL
character, or an unpaired surrogate, is a 422 naming the field, identically on SQLite and
PostgreSQL, and nothing is written (app/core/schemas.py ``text_problem``)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.factories import API, ago, create_course, create_patient, create_session
from tests.support import assert_problem

NUL_CHARACTER = "must not contain a NUL character"
LONE_SURROGATE = "must be valid Unicode text (no unpaired surrogate)"
NUL = "bad\x00text"
SURROGATE = "bad\ud800text"  # JSON's "\ud800": a half of a UTF-16 pair, alone

# (what is posted, the field in it) for every string field of every request body.
BodyCase = tuple[str, str, dict[str, Any], list[str | int]]


def _course(**fields: Any) -> dict[str, Any]:
    return {
        "indication": "lumbar pain",
        "region": "lumbar",
        "technique": "paravertebral",
        "start_date": ago(days=7)[:10],
    } | fields


def _observation(**fields: Any) -> dict[str, Any]:
    return {"instrument": "pain-nrs", "value": 5, "recorded_at": ago(hours=1)} | fields


def _session(**fields: Any) -> dict[str, Any]:
    return {"performed_at": ago(hours=1)} | fields


# (method, URL template, body, loc): {patient} and {course} are filled in by the test.
BODIES: list[BodyCase] = [
    ("POST", "/patients", {"external_id": NUL}, ["body", "external_id"]),
    ("POST", "/patients", {"name": NUL}, ["body", "name"]),
    ("POST", "/patients", {"condition": NUL}, ["body", "condition"]),
    ("PATCH", "/patients/{patient}", {"name": NUL}, ["body", "name"]),
    ("PATCH", "/patients/{patient}", {"external_id": NUL}, ["body", "external_id"]),
    ("POST", "/patients/{patient}/courses", _course(indication=NUL), ["body", "indication"]),
    ("POST", "/patients/{patient}/courses", _course(region=NUL), ["body", "region"]),
    ("POST", "/patients/{patient}/courses", _course(notes=NUL), ["body", "notes"]),
    ("POST", "/patients/{patient}/courses", _course(technique=NUL), ["body", "technique"]),
    ("PATCH", "/courses/{course}", {"notes": NUL}, ["body", "notes"]),
    (
        "POST",
        "/courses/{course}/frequency",
        {"sessions_per_week": 2, "reason": NUL},
        ["body", "reason"],
    ),
    ("POST", "/courses/{course}/sessions", _session(notes=NUL), ["body", "notes"]),
    ("POST", "/courses/{course}/sessions", _session(sites=["L4", NUL]), ["body", "sites"]),
    (
        "POST",
        "/courses/{course}/sessions",
        _session(adverse_events=[NUL]),
        ["body", "adverse_events"],
    ),
    ("POST", "/courses/{course}/sessions", _session(technique=NUL), ["body", "technique"]),
    ("POST", "/patients/{patient}/observations", _observation(note=NUL), ["body", "note"]),
    (
        "POST",
        "/patients/{patient}/observations",
        _observation(instrument=NUL),
        ["body", "instrument"],
    ),
    ("POST", "/patients", {"name": SURROGATE}, ["body", "name"]),
    ("POST", "/patients/{patient}/observations", _observation(note=SURROGATE), ["body", "note"]),
]


def _json(body: dict[str, Any]) -> str:
    """As JSON goes over the wire: a lone surrogate as its `\\ud800` escape."""
    return json.dumps(body)


def _ids(case: BodyCase) -> str:
    method, url, body, loc = case
    bad = "surrogate" if "\\ud800" in _json(body) else "nul"
    return f"{method} {url} {loc[-1]} {bad}"


async def _written(client: httpx.AsyncClient, patient_id: str, course_id: str) -> list[Any]:
    """What the patient and course hold now: it must be what they held before."""
    return [
        (await client.get(f"{API}/patients")).json()["items"],
        (await client.get(f"{API}/patients/{patient_id}/courses")).json()["items"],
        (await client.get(f"{API}/courses/{course_id}/sessions")).json()["items"],
        (await client.get(f"{API}/patients/{patient_id}/observations")).json()["items"],
        (await client.get(f"{API}/courses/{course_id}/frequency-history")).json()["items"],
    ]


@pytest.mark.parametrize("case", BODIES, ids=[_ids(c) for c in BODIES])
async def test_a_body_string_the_database_cannot_store_is_a_422_naming_the_field(
    client: httpx.AsyncClient, case: BodyCase
) -> None:
    method, template, body, loc = case
    course = await create_course(client)
    patient, course_id = course["patient_id"], course["id"]
    before = await _written(client, patient, course_id)

    url = API + template.format(patient=patient, course=course_id)
    headers = {"Content-Type": "application/json"}
    response = await client.request(method, url, content=_json(body), headers=headers)

    problem = assert_problem(response, 422, loc=loc)
    reason = LONE_SURROGATE if "\\ud800" in _json(body) else NUL_CHARACTER
    assert reason in [e["msg"] for e in problem["errors"]]
    assert "bad" not in response.text  # the value is never echoed
    assert await _written(client, patient, course_id) == before


async def test_a_batch_item_with_a_nul_is_rejected_alone(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    items = [_observation(value=3), _observation(note=NUL), _observation(instrument=NUL)]
    response = await client.post(
        f"{API}/patients/{patient['id']}/observations/batch", json={"observations": items}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["created", "rejected", "rejected"]
    assert results[1]["errors"] == [{"loc": ["note"], "msg": NUL_CHARACTER}]
    assert results[2]["errors"] == [{"loc": ["instrument"], "msg": NUL_CHARACTER}]
    stored = await client.get(f"{API}/patients/{patient['id']}/observations")
    assert [o["value"] for o in stored.json()["items"]] == [3]


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (f"{API}/patients?external_id=MRN%00", "external_id"),
        (f"{API}/cohort/summary?indication=lumbar%00", "indication"),
        (f"{API}/patients?limit=5&cursor=%00", "cursor"),
        (f"{API}/patients?unknown%00=1", "unknown\x00"),
        (f"{API}/audit?since=%00", "since"),
    ],
)
async def test_a_query_parameter_with_a_nul_is_a_422_naming_it(
    admin: httpx.AsyncClient, url: str, name: str
) -> None:
    problem = assert_problem(await admin.get(url), 422, loc=["query", name])
    assert problem["errors"][0]["msg"] == NUL_CHARACTER


async def test_a_fhir_search_parameter_with_a_nul_is_refused_naming_it(
    make_client: Any, issue_token: Any
) -> None:
    """FHIR answers bad parameters with a 400 OperationOutcome (app/fhir/responses.py)."""
    ehr: httpx.AsyncClient = make_client(await issue_token("integration"))
    for query, name in (("patient=%00", "patient"), ("code=pain%00", "code")):
        response = await ehr.get(f"/fhir/R4/Observation?{query}")
        assert response.status_code == 400, response.text
        [issue] = response.json()["issue"]
        assert issue["diagnostics"] == f"query.{name}: {NUL_CHARACTER}"


async def test_text_that_can_be_stored_is_kept_as_sent(client: httpx.AsyncClient) -> None:
    """The rule refuses only what cannot be stored: astral characters, accents, RTL text."""
    name = "Zoë 🦴 ‏مريض‎ 患者"
    patient = await create_patient(client, name=name)
    course = await create_course(client, patient["id"], notes="é\u200b\U0001f489")
    session = await create_session(client, course["id"], sites=["L4–L5 ✓"])
    assert (await client.get(f"{API}/patients/{patient['id']}")).json()["name"] == name
    assert (await client.get(f"{API}/courses/{course['id']}")).json()["notes"] == course["notes"]
    assert session["sites"] == ["L4–L5 ✓"]


def test_the_rule() -> None:
    from app.core.schemas import text_problem

    assert text_problem("plain") is None
    assert text_problem("Zoë 🦴") is None
    assert text_problem("a\x00b") == NUL_CHARACTER
    assert text_problem("a\udfffb") == LONE_SURROGATE
    assert text_problem("\ud83e\udda4") == LONE_SURROGATE  # a pair as two code points
