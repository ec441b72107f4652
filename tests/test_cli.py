"""The `outcomes` command: help, `migrate` on a fresh database, `tokens create`, and what every
command does with a database whose schema is not at this version's latest: one line naming
the fix, a non-zero exit, no traceback."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, insert, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.auth.models import ApiToken
from app.cli import main
from app.core.config import Settings, get_settings, to_async_url
from app.core.db import table_of
from app.core.migrations import head_revisions, schema_state
from app.main import create_app
from tests.migrations.support import drop_scratch, scratch_database
from tests.support import migrate, silent_port


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


def test_tokens_purge_deletes_dead_credentials_and_says_how_many(
    fresh_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0
    now = datetime.now(UTC)
    dead, alive = uuid.uuid4(), uuid.uuid4()
    engine = create_engine(fresh_db)
    try:
        with engine.begin() as conn:
            for token_id, expires_at in ((dead, now - timedelta(days=8)), (alive, None)):
                conn.execute(
                    insert(table_of(ApiToken)).values(
                        id=token_id, token_hash=token_id.hex * 2, role="admin",
                        created_at=now - timedelta(days=30), expires_at=expires_at,
                    )
                )  # fmt: skip
    finally:
        engine.dispose()
    capsys.readouterr()

    assert main(["tokens", "purge"]) == 0

    out = capsys.readouterr().out
    assert out.startswith("purged 1 access tokens, 0 enrolment codes, 0 refresh tokens")
    assert "dead for more than 168 hours (OUTCOMES_CREDENTIAL_RETENTION_HOURS)" in out
    assert [digest for _, _, digest in stored_tokens(fresh_db)] == [alive.hex * 2]


def test_tokens_create_help_names_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tokens", "create", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--role", "--patient", "--expires-in"):
        assert option in out


# --- a database whose schema is not the one this version was written for -----------------
#
# On the test database's kind (a scratch SQLite file, or a scratch PostgreSQL database made and
# dropped by the test): empty, as the README's first `outcomes serve` finds it, or migrated by
# a newer version of the service.

FUTURE_REVISION = "9999_from_a_newer_version"


@pytest.fixture
async def scratch_url(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of the test database's kind (made for this test, dropped after)."""
    url, admin = await scratch_database(database_url, str(tmp_path))
    try:
        yield url
    finally:
        await drop_scratch(url, admin)


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


async def _revisions(url: str) -> frozenset[str]:
    engine = create_async_engine(to_async_url(url))
    try:
        return (await schema_state(engine)).current
    finally:
        await engine.dispose()


def revisions(url: str) -> frozenset[str]:
    """The Alembic revisions the database is at (none: no schema)."""
    return asyncio.run(_revisions(url))


async def _stamp_future(url: str) -> None:
    engine = create_async_engine(to_async_url(url))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE alembic_version SET version_num = :v"), {"v": FUTURE_REVISION}
            )
    finally:
        await engine.dispose()


def run_outcomes(url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """The installed command, as an operator runs it (its own process, logging and exit)."""
    env = {**os.environ, "OUTCOMES_DATABASE_URL": url}
    return subprocess.run(  # noqa: S603 (this interpreter, fixed arguments)
        [sys.executable, "-m", "app.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *, says: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert says in lines[0], lines[0]


def test_serve_refuses_an_unmigrated_database_in_one_line_naming_migrate(
    scratch_url: str,
) -> None:
    # PostgreSQL is never migrated by `serve` unless asked; SQLite only with --no-migrate.
    argv = ["serve", "--port", "1"] + ([] if is_postgres(scratch_url) else ["--no-migrate"])
    result = run_outcomes(scratch_url, *argv)

    assert_one_line(result, says="run `outcomes migrate` first (or serve with `--migrate`)")
    assert result.stderr.startswith("outcomes serve: the database has no Outcomes schema yet")
    assert "Outcomes API on" not in result.stdout  # it never started the server
    assert revisions(scratch_url) == frozenset()  # and wrote nothing


@pytest.mark.usefixtures("fresh_settings")
@pytest.mark.parametrize("flags", [["--migrate"], []], ids=["--migrate", "default"])
def test_serve_migrates_when_asked_and_the_sqlite_default_always(
    scratch_url: str,
    flags: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OUTCOMES_DATABASE_URL", scratch_url)
    served: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: served.append(kwargs))
    migrates = bool(flags) or not is_postgres(scratch_url)

    status = main(["serve", "--port", "8123", *flags])

    captured = capsys.readouterr()
    if migrates:
        assert status == 0, captured.err
        assert revisions(scratch_url) == head_revisions()
        assert [call["port"] for call in served] == [8123]
        assert "No admin token exists yet" in captured.out
    else:  # PostgreSQL without --migrate
        assert status == 1
        assert served == []
        assert "outcomes migrate" in captured.err


@pytest.mark.usefixtures("fresh_settings")
@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],
        ["migrate"],
        ["tokens", "create", "--role", "admin"],
        ["tokens", "purge"],
        ["demo", "--patients", "1"],
    ],
    ids=["serve", "migrate", "tokens-create", "tokens-purge", "demo"],
)
def test_every_command_on_a_newer_schema_says_so_in_one_line(
    scratch_url: str,
    argv: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    migrate(scratch_url, "head")
    asyncio.run(_stamp_future(scratch_url))
    monkeypatch.setenv("OUTCOMES_DATABASE_URL", scratch_url)
    get_settings.cache_clear()
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("served"))

    status = main(argv)

    err = capsys.readouterr().err
    name = " ".join(argv[:2] if argv[0] == "tokens" else argv[:1])
    assert status == 1
    assert err.startswith(f"outcomes {name}: the database schema is at revision {FUTURE_REVISION}")
    assert err.count("\n") == 1
    assert "which this version of Outcomes does not know" in err
    assert revisions(scratch_url) == {FUTURE_REVISION}  # nothing was changed


def test_tokens_create_in_a_process_of_its_own_issues_a_token(scratch_url: str) -> None:
    """As an operator (and the fault suite) runs it: only what the command imports is mapped,
    so every model a flush may meet must be (api_tokens.client_id names oauth_clients)."""
    migrate(scratch_url, "head")

    result = run_outcomes(scratch_url, "tokens", "create", "--role", "admin")

    assert result.returncode == 0, result.stderr
    assert TOKEN_LINE.match(result.stdout.splitlines()[-1]), result.stdout


@pytest.mark.postgres_only
def test_tokens_create_on_an_unmigrated_postgresql_says_migrate_in_one_line(
    scratch_url: str,
) -> None:
    # The README's first steps on PostgreSQL, with the migration forgotten.
    result = run_outcomes(scratch_url, "tokens", "create", "--role", "admin")

    assert_one_line(result, says="run `outcomes migrate`")
    assert result.stderr.startswith("outcomes tokens create: the database has no Outcomes schema")
    assert "otk_" not in result.stdout
    assert revisions(scratch_url) == frozenset()


@pytest.mark.postgres_only
def test_tokens_create_on_an_older_postgresql_schema_names_both_revisions(
    scratch_url: str,
) -> None:
    migrate(scratch_url, "0005")

    result = run_outcomes(scratch_url, "tokens", "create", "--role", "admin")

    assert_one_line(result, says="at revision 0005, not the latest")
    assert "run `outcomes migrate`" in result.stderr
    assert revisions(scratch_url) == {"0005"}


@pytest.mark.parametrize(
    ("url", "argv"),
    [
        # A SQLite file in a folder that does not exist cannot be opened.
        ("sqlite:///{tmp_path}/missing/outcomes.db", ["migrate"]),
        # A PostgreSQL server that is not there (the discard port is closed).
        (
            "postgresql://outcomes:secret-pw@127.0.0.1:9/outcomes",
            ["tokens", "create", "--role", "admin"],
        ),
    ],
    ids=["sqlite-migrate", "postgresql-tokens-create"],
)
def test_a_database_that_cannot_be_reached_is_one_line_not_a_traceback(
    tmp_path: Path, url: str, argv: list[str]
) -> None:
    result = run_outcomes(url.format(tmp_path=tmp_path), *argv)

    assert_one_line(result, says="cannot use the")
    assert "secret-pw" not in result.stderr


@pytest.mark.parametrize("argv", [["migrate"], ["tokens", "create", "--role", "admin"]])
def test_a_postgresql_that_never_answers_is_one_line_within_the_connect_timeout(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTCOMES_DB_CONNECT_TIMEOUT_SECONDS", "0.5")
    with silent_port() as port:
        started = time.monotonic()
        result = run_outcomes(f"postgresql://outcomes@127.0.0.1:{port}/outcomes", *argv)
        elapsed = time.monotonic() - started

    assert_one_line(result, says="cannot use the")
    # The interpreter's start takes most of it; asyncpg alone would wait a minute.
    assert elapsed < 30, elapsed


@pytest.mark.usefixtures("fresh_settings")
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "OUTCOMES_DATABASE_URL is not a database URL"),
        ("mysql://outcomes:secret-pw@db/outcomes", "OUTCOMES_DATABASE_URL names mysql"),
    ],
    ids=["empty", "mysql"],
)
def test_a_database_url_the_service_cannot_use_is_one_line(
    url: str, says: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OUTCOMES_DATABASE_URL", url)
    get_settings.cache_clear()

    assert main(["tokens", "create", "--role", "admin"]) == 1

    err = capsys.readouterr().err
    assert err.startswith(f"outcomes tokens create: {says}")
    assert err.count("\n") == 1
    assert "secret-pw" not in err
