"""The Alembic migrations from code: upgrade (`outcomes migrate`, `serve`), and where a
database's schema stands against the migrations this version ships (`serve`'s start-up check,
the other commands, `/readyz`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATE_HINT = "run `outcomes migrate`"


def _alembic_ini() -> Path:
    # A source checkout (editable install) has alembic.ini beside the package; an image built
    # from the Dockerfile runs from the checkout's copy in the working directory.
    for candidate in (Path(__file__).resolve().parents[2], Path.cwd()):
        ini = candidate / "alembic.ini"
        if ini.is_file():
            return ini
    raise FileNotFoundError(
        "alembic.ini not found beside the app package or in the working directory"
    )


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(_alembic_ini()))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    # Read once: the migrations ship with the code.
    return ScriptDirectory.from_config(Config(str(_alembic_ini())))


def head_revisions() -> frozenset[str]:
    """The revisions this version's migrations end at."""
    return frozenset(_script().get_heads())


def known_revisions() -> frozenset[str]:
    return frozenset(revision.revision for revision in _script().walk_revisions())


@dataclass(frozen=True, slots=True)
class SchemaState:
    """A database's Alembic revisions against the heads of this version's migrations."""

    current: frozenset[str]
    heads: frozenset[str]

    @property
    def at_head(self) -> bool:
        return self.current == self.heads

    @property
    def from_newer_version(self) -> bool:
        """Migrated by a version of the service with migrations this one does not have:
        migrating cannot help (nor should this version serve it)."""
        return not self.current <= known_revisions()

    def describe(self, migrate_hint: str = MIGRATE_HINT) -> str:
        """One sentence for an operator: where the schema is and what to do about it."""
        if self.at_head:
            return "the database schema is at the latest revision"
        head = ", ".join(sorted(self.heads))
        if not self.current:
            return f"the database has no Outcomes schema yet (latest is {head}): {migrate_hint}"
        at = ", ".join(sorted(self.current))
        if self.from_newer_version:
            return (
                f"the database schema is at revision {at}, which this version of Outcomes "
                f"does not know (its latest is {head}): run the matching version"
            )
        return f"the database schema is at revision {at}, not the latest ({head}): {migrate_hint}"


VERSION_TABLE = "alembic_version"  # Alembic's default (migrations/env.py keeps it)


def _has_version_table(connection: Connection) -> bool:
    return inspect(connection).has_table(VERSION_TABLE)


async def schema_state(engine: AsyncEngine) -> SchemaState:
    """Read the database's revisions (none before the first migration). Raises what the driver
    raises when the database cannot be reached.

    Two small reads rather than Alembic's MigrationContext, which logs two lines each time it
    is set up: /readyz is polled every few seconds."""
    async with engine.connect() as connection:
        current: frozenset[str] = frozenset()
        if await connection.run_sync(_has_version_table):
            rows = await connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608 (a constant)
            current = frozenset(str(row[0]) for row in rows)
    return SchemaState(current, head_revisions())
