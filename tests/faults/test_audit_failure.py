"""The audit trail refuses a row (issue 15, API.md "Failure semantics": the audit row of a
request is never silently lost; if it cannot be written, a PHI read is not served, the answer
is a 503, and the failure is logged without PHI).

A real ``outcomes serve`` on a private database of the kind this run tests:
- PostgreSQL: a private cluster; the service connects as a role of its own, whose INSERT
  privilege on ``audit_events`` is revoked once the patient is recorded;
- SQLite: a database file of its own, where a trigger then refuses every audit insert.
Before the fault each read is served (200), so what changes is the audit trail alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bench.server import serve
from tests.factories import API
from tests.faults.support import (
    Patient,
    api_client,
    cli_token,
    execute,
    private_cluster,
    seed_patient,
)
from tests.support import migrate

# A name and birth date no log line could contain by chance.
NAME = "Zephyrine Quillfeather"
BIRTH_DATE = "1961-04-17"

# Each read, and the role that makes it: a clinician's app, or an EHR's integration on FHIR.
READS = {
    "patient": (f"{API}/patients/{{id}}", "clinician"),
    "observations": (f"{API}/patients/{{id}}/observations", "clinician"),
    "trends": (f"{API}/patients/{{id}}/trends", "clinician"),
    "fhir-patient": ("/fhir/R4/Patient/{id}", "integration"),
}
ROLES = ("clinician", "integration")

APP_ROLE = "outcomes_app"
GRANTS = (
    f"CREATE ROLE {APP_ROLE} LOGIN",
    f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}",
    f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}",
)
REVOKE = f"REVOKE INSERT ON audit_events FROM {APP_ROLE}"
REFUSE = (
    "CREATE TRIGGER audit_events_refused BEFORE INSERT ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'the fault suite refuses audit rows'); END"
)


@dataclass(frozen=True, slots=True)
class RefusingServer:
    """A server whose audit inserts fail, a token per role, the patient and the server's log."""

    base: str
    tokens: dict[str, str]
    patient: Patient
    log: Path


async def _seed(base: str, tokens: dict[str, str]) -> Patient:
    async with api_client(base, tokens["clinician"]) as api:
        patient = await seed_patient(api, NAME)
        for days in (9, 6, 3):
            moment = datetime.now(UTC) - timedelta(days=days)
            body = {"instrument": "pain-nrs", "value": days - 1, "recorded_at": moment.isoformat()}
            stored = await api.post(f"{API}/patients/{patient.id}/observations", json=body)
            if stored.status_code != 201:
                raise RuntimeError(f"set-up: an observation answered {stored.status_code}")
        # The control: before the fault, every read is served.
    for route, role in READS.values():
        async with api_client(base, tokens[role]) as reader:
            served = await reader.get(route.format(id=patient.id))
        if served.status_code != 200:
            raise RuntimeError(f"set-up: {route} answered {served.status_code} before the fault")
    return patient


@pytest.fixture(scope="module")
async def refusing(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RefusingServer]:
    if database_url.startswith("postgres"):
        with private_cluster() as cluster:
            migrate(cluster.url())
            await execute(cluster.url(), *GRANTS)
            tokens = {role: cli_token(cluster.url(), role) for role in ROLES}
            with serve(cluster.url(APP_ROLE), migrate=False) as server:
                patient = await _seed(server.base, tokens)
                await execute(cluster.url(), REVOKE)
                yield RefusingServer(server.base, tokens, patient, server.log)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('audit-refused') / 'outcomes.db'}"
        migrate(url)
        tokens = {role: cli_token(url, role) for role in ROLES}
        with serve(url, migrate=False) as server:
            patient = await _seed(server.base, tokens)
            await execute(url, REFUSE)
            yield RefusingServer(server.base, tokens, patient, server.log)


@dataclass(frozen=True, slots=True)
class Refused:
    response: httpx.Response
    logged: str  # what the server logged for it
    whole_log: str


async def _read(server: RefusingServer, read: str) -> Refused:
    """Make the read once the audit trail refuses rows; the answer, and the server's log."""
    offset = server.log.stat().st_size
    route, role = READS[read]
    async with api_client(server.base, server.tokens[role]) as client:
        response = await client.get(route.format(id=server.patient.id))
    # The lines are written around the answer, by another process: wait until the log has
    # grown and then stayed still for 0.3 s (3 s at most), so that the next read's share
    # holds nothing of this one's.
    deadline, size, still_since = time.monotonic() + 3, offset, time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        grown = server.log.stat().st_size
        if grown != size:
            size, still_since = grown, time.monotonic()
        elif size > offset and time.monotonic() - still_since >= 0.3:
            break
    with server.log.open("rb") as f:
        f.seek(offset)
        logged = f.read().decode(errors="replace")
    print(
        f"\n[faults] audit refused, {read}: HTTP {response.status_code} "
        f"{response.headers.get('content-type')}; {len(logged)} bytes logged"
    )
    return Refused(response, logged, server.log.read_text(errors="replace"))


def _phi(patient: Patient) -> tuple[str, ...]:
    return (NAME, patient.external_id, BIRTH_DATE, patient.id, patient.id.replace("-", ""))


@pytest.mark.parametrize("read", list(READS))
async def test_a_phi_read_whose_audit_row_cannot_be_written_is_not_served(
    refusing: RefusingServer, read: str
) -> None:
    refused = await _read(refusing, read)
    assert not refused.response.is_success
    for phi in _phi(refusing.patient):
        assert phi not in refused.response.text


@pytest.mark.parametrize("read", list(READS))
async def test_a_phi_read_whose_audit_row_cannot_be_written_is_a_503_with_retry_after(
    refusing: RefusingServer, read: str
) -> None:
    response = (await _read(refusing, read)).response
    assert response.status_code == 503, response.text[:300]
    assert response.headers.get("retry-after")
    if read.startswith("fhir"):  # FHIR answers every error as an OperationOutcome
        assert response.headers["content-type"].startswith("application/fhir+json")
        assert response.json()["resourceType"] == "OperationOutcome"
    else:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["status"] == 503


@pytest.mark.parametrize("read", list(READS))
async def test_the_audit_failure_is_logged_naming_the_audit_trail_without_phi(
    refusing: RefusingServer, read: str
) -> None:
    refused = await _read(refusing, read)
    assert "audit" in refused.logged.lower(), refused.logged[-2000:]
    for phi in _phi(refusing.patient):
        assert phi not in refused.whole_log
