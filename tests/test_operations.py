"""Operations: readiness reflects the database and its schema; logs carry no PHI; the routes
outside /api and /fhir are the known open ones."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from app.core.config import Settings
from app.main import create_app
from tests.factories import API
from tests.migrations.support import drop_scratch, scratch_database
from tests.support import assert_problem, migrate


async def test_readyz_is_503_problem_when_the_database_is_unreachable(tmp_path: object) -> None:
    # A SQLite file in a folder that does not exist cannot be opened.
    app = create_app(Settings(database_url="sqlite:////nonexistent-dir/x/outcomes.db"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert_problem(await client.get("/readyz"), 503)
            assert (await client.get("/healthz")).status_code == 200


async def _readyz(database_url: str) -> httpx.Response:
    app = create_app(Settings(database_url=database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/readyz")


async def test_readyz_is_503_naming_migrate_until_the_schema_is_at_the_latest_revision(
    database_url: str, tmp_path: Path
) -> None:
    # A database of the test database's kind, empty as the README's first `serve` finds it.
    scratch, admin = await scratch_database(database_url, str(tmp_path))
    try:
        empty = assert_problem(await _readyz(scratch), 503)
        assert "no Outcomes schema yet" in empty["detail"]
        assert "run `outcomes migrate`" in empty["detail"]

        migrate(scratch, "0005")
        behind = assert_problem(await _readyz(scratch), 503)
        assert "at revision 0005, not the latest" in behind["detail"]
        assert "run `outcomes migrate`" in behind["detail"]

        migrate(scratch, "head")
        ready = await _readyz(scratch)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready"}
    finally:
        await drop_scratch(scratch, admin)


async def test_access_log_names_the_route_not_the_url(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="app.access"):
        await client.get(f"{API}/patients", params={"external_id": "MRN-SECRET-42"})
        await client.get(f"{API}/patients/00000000-0000-4000-8000-000000000001")
    lines = [r.getMessage() for r in caplog.records if r.name == "app.access"]
    assert any(line.startswith("GET /api/v1/patients 200") for line in lines), lines
    assert any(line.startswith("GET /api/v1/patients/{patient_id} 404") for line in lines), lines
    assert not any("MRN-SECRET-42" in line or "0000-4000" in line for line in lines)


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get(f"{API}/patients/00000000-0000-4000-8000-000000000002")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'route="/api/v1/patients/{patient_id}"' in text
    assert "outcomes_http_request_duration_seconds_bucket" in text
    assert "0000-4000" not in text


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/fhir/R4/$export-status/00000000-0000-4000-8000-000000000003", "DELETE, GET"),
        ("/fhir/R4/Patient/$export", "GET"),
        ("/fhir/R4/$export-file/00000000-0000-4000-8000-000000000003/Patient.ndjson", "GET"),
        (f"{API}/courses/00000000-0000-4000-8000-000000000003", "GET, PATCH"),
    ],
)
async def test_a_405_names_every_method_of_the_resource_even_with_a_dollar_in_its_path(
    client: httpx.AsyncClient, path: str, allow: str
) -> None:
    response = await client.request("PUT", path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow


# Every route outside /api and /fhir (tests/auth/test_contract.py holds those), written out by
# hand from the documents: each is open (no bearer token) and holds no patient data
# (docs/security.md; docs/dashboard.md for the pages). A route added outside /api and /fhir
# gets a row here in the same change, so none is left open by accident. `MOUNT` is a folder
# of files; the value is a path under it to try.
OPEN_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "/healthz",
    ("GET", "/readyz"): "/readyz",
    ("GET", "/metrics"): "/metrics",
    ("GET", "/openapi.json"): "/openapi.json",
    ("GET", "/docs"): "/docs",
    ("GET", "/docs/oauth2-redirect"): "/docs/oauth2-redirect",
    ("GET", "/redoc"): "/redoc",
    ("GET", "/dashboard"): "/dashboard",
    ("MOUNT", "/dashboard/assets"): "/dashboard/assets/js/main.js",
    ("POST", "/oauth/token"): "/oauth/token",  # OAuth 2 clients authenticate in the body
    # SMART discovery at the server's root (also under /fhir/R4): open, as SMART requires.
    ("GET", "/.well-known/smart-configuration"): "/.well-known/smart-configuration",
}


def test_every_route_outside_the_api_is_a_known_open_one(app: FastAPI) -> None:
    found = set()
    for route in iter_route_contexts(app.routes):
        if route.path is None or route.path.startswith(("/api/", "/fhir/")):
            continue
        for method in route.methods or {"MOUNT"}:
            if method != "HEAD":
                found.add((method, route.path))
    assert sorted(found - OPEN_ROUTES.keys()) == [], "routes missing from OPEN_ROUTES"
    assert sorted(OPEN_ROUTES.keys() - found) == [], "rows for routes that do not exist"


@pytest.mark.parametrize(
    "path", [path for (method, _), path in OPEN_ROUTES.items() if method in ("GET", "MOUNT")]
)
async def test_the_open_pages_need_no_token(anonymous: httpx.AsyncClient, path: str) -> None:
    response = await anonymous.get(path)
    assert response.status_code == 200, response.text
