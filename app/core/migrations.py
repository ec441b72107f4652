"""Run the Alembic migrations from code (used by `outcomes serve` and `outcomes migrate`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config


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
