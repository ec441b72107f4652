"""API-wide conventions: problem+json for every error, operations endpoints, schema and docs;
and the suite's own: no module imports another test module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.factories import API
from tests.support import ROOT, assert_problem


async def test_unknown_route_is_404_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get(f"{API}/nothing-here"), 404)
    assert body["type"] == "about:blank"


async def test_wrong_method_is_405_problem(client: httpx.AsyncClient) -> None:
    response = await client.delete(f"{API}/patients")
    assert_problem(response, 405)
    assert "allow" in response.headers


async def test_malformed_json_is_422_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/patients", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    body = assert_problem(response, 422)
    assert body["errors"][0]["loc"][0] == "body"


async def test_body_that_is_not_an_object_is_422(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post(f"{API}/patients", json=[1, 2]), 422)


async def test_validation_errors_do_not_echo_the_input(client: httpx.AsyncClient) -> None:
    # Rejected values may be PHI: errors name the field and the reason, never the value.
    response = await client.post(f"{API}/patients", json={"sex": "SECRET-VALUE"})
    assert "SECRET-VALUE" not in response.text


async def test_limit_above_500_is_422(client: httpx.AsyncClient) -> None:
    assert_problem(
        await client.get(f"{API}/patients", params={"limit": 501}), 422, loc=["query", "limit"]
    )


async def test_limit_below_1_is_422(client: httpx.AsyncClient) -> None:
    assert_problem(
        await client.get(f"{API}/patients", params={"limit": 0}), 422, loc=["query", "limit"]
    )


async def test_limit_of_500_is_accepted(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{API}/patients", params={"limit": 500})).status_code == 200


async def test_garbage_cursor_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{API}/patients", params={"cursor": "not-a-cursor"})
    assert_problem(response, 422, loc=["query", "cursor"])


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_checks_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert f"{API}/patients" in schema["paths"]
    assert (await client.get("/docs")).status_code == 200


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of each module ``path`` imports from, relative imports resolved; a
    name imported from a package counts as a module too (``from tests import test_x``)."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            parts = package[: len(package) - node.level + 1] if node.level else ()
            base = ".".join([*parts, *([node.module] if node.module else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    """Shared helpers live in support modules (tests/support.py, tests/factories.py,
    tests/<package>/support.py), never in a test module or a conftest that others import."""
    offences: dict[str, str] = {}  # "path:line" -> the module it imports
    for path in sorted((ROOT / "tests").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        for line, module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "tests" and any(
                part.startswith("test_") or part == "conftest" for part in parts[1:]
            ):
                offences.setdefault(f"{name}:{line}", module)
    assert offences == {}
