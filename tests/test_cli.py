"""The `outcomes` command: help, `migrate` on a fresh database, and `tokens create`."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, inspect, text

from app.cli import main
from app.core.config import Settings, get_settings
from app.main import create_app


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    # get_settings is cached: clear it so the command reads the environment set by the test.
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "migrate", "demo"):
        assert command in out


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "required" in capsys.readouterr().err


def test_demo_help_names_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    for option in ("--patients", "--seed", "--today"):
        assert option in out


@pytest.mark.usefixtures("fresh_settings")
def test_migrate_creates_the_tables_on_a_fresh_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fresh.db"
    monkeypatch.setenv("OUTCOMES_DATABASE_URL", f"sqlite:///{path}")
    get_settings.cache_clear()

    assert main(["migrate"]) == 0
    assert "migrated" in capsys.readouterr().out

    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    expected = {"patients", "courses", "frequency_changes", "treatment_sessions", "observations"}
    assert expected | {"alembic_version"} <= tables

    # A second run finds nothing to do.
    assert main(["migrate"]) == 0


# --- outcomes tokens create ---------------------------------------------------------------

TOKEN_LINE = re.compile(r"^otk_[A-Za-z0-9_-]{43}$")


@pytest.fixture
def fresh_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_settings: None) -> str:
    """OUTCOMES_DATABASE_URL names a SQLite file that does not exist yet."""
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    monkeypatch.setenv("OUTCOMES_DATABASE_URL", url)
    get_settings.cache_clear()
    return url


def stored_tokens(url: str) -> list[tuple[Any, ...]]:
    """(role, patient_id, token_hash) of every token in the database (none if no file)."""
    if not Path(url.removeprefix("sqlite:///")).exists():
        return []
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if "api_tokens" not in inspect(conn).get_table_names():
                return []
            rows = conn.execute(text("SELECT role, patient_id, token_hash FROM api_tokens"))
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


async def _call_api(url: str, token: str, requests: list[tuple[str, str, Any]]) -> list[Any]:
    """Run requests against an app on ``url`` with ``token``; (status, json body) of each."""
    app = create_app(Settings(database_url=url))
    results: list[Any] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            for method, path, body in requests:
                response = await client.request(method, path, json=body)
                results.append((response.status_code, response.json()))
    return results


def call_api(url: str, token: str, *requests: tuple[str, str, Any]) -> list[Any]:
    return asyncio.run(_call_api(url, token, list(requests)))


def test_tokens_create_prints_a_working_admin_token_on_the_last_line(
    fresh_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tokens", "create", "--role", "admin"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    token = lines[-1]
    assert TOKEN_LINE.match(token), captured.out
    assert "admin" in captured.out
    # shown once: only on its own line, never in the explanation around it or on stderr
    assert token not in "\n".join(lines[:-1])
    assert token not in captured.err
    stored = stored_tokens(fresh_db)
    assert len(stored) == 1
    role, patient_id, digest = stored[0]
    assert (role, patient_id) == ("admin", None)
    assert token not in repr(stored)
    assert len(digest) == 64

    # The token works against an app on that database, with the admin's powers.
    (patients, _), (issued_status, issued) = call_api(
        fresh_db,
        token,
        ("GET", "/api/v1/patients", None),
        ("POST", "/api/v1/tokens", {"role": "dashboard"}),
    )
    assert patients == 200
    assert issued_status == 201
    assert issued["token"].startswith("otk_")


def test_tokens_create_binds_a_patient_token_and_sets_an_expiry(
    fresh_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tokens", "create", "--role", "admin"]) == 0
    admin = capsys.readouterr().out.splitlines()[-1]
    [(status, patient)] = call_api(fresh_db, admin, ("POST", "/api/v1/patients", {}))
    assert status == 201

    argv = ["tokens", "create", "--role", "patient", "--patient", patient["id"]]
    assert main([*argv, "--expires-in", "7"]) == 0
    out = capsys.readouterr().out
    token = out.splitlines()[-1]
    assert TOKEN_LINE.match(token)
    assert patient["id"] in out
    assert "never" not in out  # it prints the expiry instead
    [(status, _)] = call_api(fresh_db, token, ("GET", f"/api/v1/patients/{patient['id']}", None))
    assert status == 200
    [(status, _)] = call_api(fresh_db, token, ("GET", "/api/v1/patients", None))
    assert status == 403


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--role", "patient"], "a patient token needs patient_id"),
        (
            ["--role", "clinician", "--patient", str(uuid.uuid4())],
            "only a patient token is bound to a patient_id",
        ),
        (["--role", "patient", "--patient", str(uuid.uuid4())], "no patient with this id"),
        (["--role", "admin", "--expires-in", "0"], "greater than 0"),
        (["--role", "admin", "--expires-in", "-3"], "greater than 0"),
        (["--role", "admin", "--expires-in", "3651"], "less than or equal to 3650"),
    ],
)
def test_tokens_create_refuses_with_the_reason_and_writes_nothing(
    fresh_db: str, capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    assert main(["tokens", "create", *argv]) == 2
    captured = capsys.readouterr()
    assert reason in captured.err
    assert "otk_" not in captured.out + captured.err
    assert stored_tokens(fresh_db) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--role", "nope"], "invalid choice: 'nope'"),
        ([], "the following arguments are required: --role"),
        (["--role", "patient", "--patient", "not-a-uuid"], "--patient: invalid UUID value"),
        (["--role", "admin", "--expires-in", "soon"], "--expires-in: invalid float value"),
    ],
)
def test_tokens_create_argument_errors_exit_2(
    fresh_db: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tokens", "create", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: outcomes tokens create" in err
    assert message in err
    assert stored_tokens(fresh_db) == []


def test_tokens_create_help_names_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tokens", "create", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--role", "--patient", "--expires-in"):
        assert option in out
