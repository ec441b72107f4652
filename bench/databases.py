"""Throw-away databases for a benchmark run: PostgreSQL databases named outcomes_bench_<pid>_*
(created and dropped here; never anything else) and SQLite files in a temporary folder."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from app.core.migrations import upgrade

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
_OURS = re.compile(r"^outcomes_bench_[0-9]+_[a-z0-9]+$")


def asyncpg_dsn(url: str) -> str:
    """A plain ``postgresql://`` DSN for asyncpg, whatever driver the URL names."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _admin(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(with_database(server_url, "postgres")))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def bench_database_name(suffix: str) -> str:
    name = f"outcomes_bench_{os.getpid()}_{suffix}"
    assert _OURS.match(name), name
    return name


def create_postgres(server_url: str, name: str, template: str | None = None) -> str:
    """A new, migrated database (or a copy of ``template``); returns its URL."""
    assert _OURS.match(name), f"refusing to create {name}: not a benchmark database name"
    sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
    asyncio.run(_admin(server_url, sql))
    url = with_database(server_url, name)
    if template is None:
        upgrade(url)
    return url


def drop_postgres(server_url: str, name: str) -> None:
    assert _OURS.match(name), f"refusing to drop {name}: not a benchmark database name"
    asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def postgres_databases(server_url: str, keep: bool = False) -> Iterator[list[str]]:
    """Collects the names of the databases created in the block and drops them after it."""
    names: list[str] = []
    try:
        yield names
    finally:
        if not keep:
            for name in names:
                drop_postgres(server_url, name)


@contextmanager
def sqlite_database(keep: bool = False) -> Iterator[str]:
    """A migrated SQLite file in a fresh temporary folder; yields its URL."""
    folder = Path(tempfile.mkdtemp(prefix="outcomes-bench-"))
    url = f"sqlite:///{folder / 'bench.db'}"
    try:
        upgrade(url)
        yield url
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def postgres_reachable(server_url: str) -> str | None:
    """None when the server answers, else why not."""

    async def probe() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(with_database(server_url, "postgres")), timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
