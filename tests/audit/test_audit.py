"""The audit trail: one row per access to patient data or denied attempt; no PHI; append-only."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import API, ago, create_course, create_patient
from tests.support import Issue, MakeClient, assert_problem


async def audit_of(admin: httpx.AsyncClient, patient_id: str) -> list[dict[str, Any]]:
    response = await admin.get(f"{API}/audit", params={"patient_id": patient_id, "limit": 500})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_reads_and_writes_leave_one_row_each(
    client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    patient = await create_patient(client, name="Audit Subject", external_id="MRN-AUDIT-1")
    pid = patient["id"]
    await client.get(f"{API}/patients/{pid}")
    body = {"instrument": "pain-nrs", "value": 7, "recorded_at": ago(hours=1)}
    response = await client.post(f"{API}/patients/{pid}/observations", json=body)
    rows = await audit_of(admin, pid)
    assert [(r["action"], r["resource_type"], r["status"], r["outcome"]) for r in rows] == [
        ("create", "patient", 201, "allowed"),
        ("read", "patient", 200, "allowed"),
        ("create", "observation", 201, "allowed"),
    ]
    assert all(r["role"] == "clinician" and r["token_id"] for r in rows)
    assert rows[2]["request_id"] == response.headers["x-request-id"]
    assert rows[1]["resource_id"] == pid


async def test_no_phi_in_the_trail(client: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    patient = await create_patient(client, name="Zelda Confidential", external_id="MRN-SECRET-77")
    await client.patch(f"{API}/patients/{patient['id']}", json={"condition": "secret condition"})
    listing = (await admin.get(f"{API}/audit", params={"patient_id": patient["id"]})).text
    for value in ("Zelda", "MRN-SECRET-77", "secret condition"):
        assert value not in listing


async def test_denied_attempts_are_recorded(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    make_client: MakeClient,
    issue_token: Issue,
) -> None:
    own = await create_patient(client)
    other = await create_patient(client)
    patient = make_client(await issue_token("patient", own["id"]))
    dashboard = make_client(await issue_token("dashboard"))
    assert_problem(await anonymous.get(f"{API}/patients/{other['id']}"), 401)
    assert_problem(await dashboard.get(f"{API}/patients/{other['id']}"), 403)
    assert_problem(await patient.get(f"{API}/patients/{other['id']}"), 404)
    rows = await audit_of(admin, other["id"])
    denied = [(r["role"], r["status"], r["outcome"]) for r in rows if r["outcome"] == "denied"]
    assert denied == [
        (None, 401, "denied"),
        ("dashboard", 403, "denied"),
        ("patient", 404, "denied"),
    ]


async def test_a_failed_write_is_audited_and_writes_nothing_else(
    client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    course = await create_course(client)
    await client.patch(f"{API}/courses/{course['id']}", json={"status": "completed"})
    response = await client.post(
        f"{API}/courses/{course['id']}/sessions", json={"performed_at": ago(hours=1)}
    )
    assert_problem(response, 409)
    rows = await audit_of(admin, course["patient_id"])
    last = rows[-1]
    assert (last["action"], last["resource_type"], last["status"], last["outcome"]) == (
        "create", "session", 409, "allowed",
    )  # fmt: skip
    assert (await client.get(f"{API}/courses/{course['id']}/sessions")).json()["items"] == []


async def test_only_admins_read_the_trail(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"{API}/audit"), 403)


async def test_trail_pages_and_filters_by_time(
    client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    for _ in range(5):
        await client.get(f"{API}/patients/{patient['id']}")
    first = (
        await admin.get(f"{API}/audit", params={"patient_id": patient["id"], "limit": 2})
    ).json()
    assert len(first["items"]) == 2
    assert first["next_cursor"]
    second = await admin.get(
        f"{API}/audit",
        params={"patient_id": patient["id"], "limit": 2, "cursor": first["next_cursor"]},
    )
    assert {r["id"] for r in first["items"]}.isdisjoint(r["id"] for r in second.json()["items"])
    later = await admin.get(
        f"{API}/audit", params={"patient_id": patient["id"], "since": ago(hours=-1)}
    )
    assert later.json()["items"] == []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET status = 200",
        "DELETE FROM audit_events",
    ],
)
async def test_the_database_refuses_to_rewrite_the_trail(
    client: httpx.AsyncClient, engine: AsyncEngine, statement: str
) -> None:
    await create_patient(client)  # at least one audit row exists
    with pytest.raises(DBAPIError, match="append-only"):
        async with engine.begin() as conn:
            await conn.execute(text(statement))


async def test_unknown_token_id_revocation_is_404(admin: httpx.AsyncClient) -> None:
    assert_problem(await admin.delete(f"{API}/tokens/{uuid.uuid4()}"), 404)


async def test_creating_a_patient_is_audited_under_the_new_patient(
    client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    patient = await create_patient(client)
    [row] = await audit_of(admin, patient["id"])
    assert (row["action"], row["resource_type"], row["resource_id"]) == (
        "create",
        "patient",
        patient["id"],
    )


async def test_a_read_runs_without_a_transaction_and_its_audit_row_commits_by_itself(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """GET requests skip BEGIN/COMMIT (each statement sees its own snapshot, as under READ
    COMMITTED anyway); writes keep their one transaction."""
    patient = await create_patient(client)
    levels: list[str | None] = []

    def on_begin(conn: Connection) -> None:
        levels.append(conn.get_execution_options().get("isolation_level"))

    event.listen(engine.sync_engine, "begin", on_begin)
    try:
        read = await client.get(f"{API}/patients/{patient['id']}")
        read_levels, levels[:] = list(levels), []
        write = await client.patch(f"{API}/patients/{patient['id']}", json={"sex": "female"})
    finally:
        event.remove(engine.sync_engine, "begin", on_begin)

    assert (read.status_code, write.status_code) == (200, 200)
    assert read_levels
    assert set(read_levels) == {"AUTOCOMMIT"}
    assert levels
    assert "AUTOCOMMIT" not in levels
    rows = await audit_of(admin, patient["id"])
    assert [(r["action"], r["status"]) for r in rows][-2:] == [("read", 200), ("update", 200)]


async def test_every_trend_read_leaves_one_row_with_its_status(
    client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    """With a course to answer (on PostgreSQL its row is written by the read's own statement),
    without one, for an unknown course and for an unknown patient."""
    course = await create_course(client)
    pid = course["patient_id"]
    without = (await create_patient(client))["id"]
    unknown = str(uuid.uuid4())
    reads = [
        (pid, f"{API}/patients/{pid}/trends", 200),
        (without, f"{API}/patients/{without}/trends", 200),
        (without, f"{API}/patients/{without}/trends?course_id={course['id']}", 404),
        (unknown, f"{API}/patients/{unknown}/trends", 404),
    ]
    for patient_id, url, status in reads:
        response = await client.get(url)
        assert response.status_code == status, response.text
        rows = [r for r in await audit_of(admin, patient_id) if r["action"] == "read"]
        assert [(r["resource_type"], r["status"], r["request_id"]) for r in rows][-1:] == [
            ("trend", status, response.headers["x-request-id"])
        ]
        assert sum(r["request_id"] == response.headers["x-request-id"] for r in rows) == 1
