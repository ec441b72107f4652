"""Auth's part of what the running app holds (app/core/state.py says why it is apart)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from app.auth.cache import TokenCache
from app.auth.revocations import RevocationListener
from app.core.state import state_of

_NAME = "auth"


@dataclass(frozen=True, slots=True)
class AuthState:
    token_cache: TokenCache
    # PostgreSQL with the cache on: hears revocations as they commit; else None.
    revocations: RevocationListener | None


def set_auth_state(app: Starlette, state: AuthState) -> None:
    setattr(app.state, _NAME, state)


def auth_state(source: HTTPConnection | Starlette) -> AuthState:
    return state_of(source, _NAME, AuthState)
