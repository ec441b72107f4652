"""What the running app holds, typed: built by create_app's lifespan, read by requests.

Starlette's ``app.state`` is untyped: each resource read from it by name is ``Any``. Each layer
stores one frozen record there instead and reads it back through a typed accessor: this
module's ``AppState`` for core's resources; app/auth/state.py for auth's (core imports no
domain code, so it cannot name auth's types).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from app.core import pg
from app.core.config import Settings

T = TypeVar("T")

_NAME = "outcomes"


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    read_sessionmaker: async_sessionmaker[AsyncSession]  # GET and HEAD (app.core.db.READS)
    raw_pool: pg.Pool | None  # PostgreSQL's plain asyncpg pool (app/core/pg.py); None on SQLite


def state_of(source: HTTPConnection | Starlette, name: str, kind: type[T]) -> T:
    """The ``kind`` stored as ``app.state.<name>``, for a request (or websocket) or the app."""
    app = source.app if isinstance(source, HTTPConnection) else source
    value = getattr(app.state, name, None)
    if not isinstance(value, kind):
        raise RuntimeError(f"app.state.{name} is not set: the app's lifespan has not started")
    return value


def set_app_state(app: Starlette, state: AppState) -> None:
    setattr(app.state, _NAME, state)


def app_state(source: HTTPConnection | Starlette) -> AppState:
    return state_of(source, _NAME, AppState)
