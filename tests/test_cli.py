"""The `outcomes` command: help, and `migrate` on a fresh database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from app.cli import main
from app.core.config import get_settings


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
