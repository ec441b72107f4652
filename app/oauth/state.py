"""OAuth's part of what the running app holds (app/core/state.py says why it is apart)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from app.core.state import state_of
from app.oauth.key_sets import KeySets

_NAME = "oauth"


@dataclass(frozen=True, slots=True)
class OAuthState:
    # The key sets of clients registered with a jwks_url, fetched and kept by this process.
    key_sets: KeySets


def set_oauth_state(app: Starlette, state: OAuthState) -> None:
    setattr(app.state, _NAME, state)


def oauth_state(source: HTTPConnection | Starlette) -> OAuthState:
    return state_of(source, _NAME, OAuthState)
