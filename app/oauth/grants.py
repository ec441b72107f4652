"""What a grant handler receives and returns: the token endpoint (app/oauth/router.py) reads
the form, picks the handler by `grant_type`, and answers what it returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.rules import AccessRecord
from app.oauth.errors import OAuthError


@dataclass(frozen=True, slots=True)
class TokenRequest:
    form: Mapping[str, str]  # each field once (a repeated field is refused before this)
    token_url: str  # this endpoint's absolute URL: a client assertion's required `aud`
    caller: str  # the client's address, for bounding repeated failures
    session: AsyncSession
    request: Request
    # The request's audit row: a grant that issues a token names it here (`principal`: the
    # new token's, `patient_id`, `resource_id`) and sets `outcome = "allowed"`.
    access: AccessRecord

    def require(self, name: str) -> str:
        value = self.form.get(name, "")
        if not value:
            raise OAuthError("invalid_request", f"`{name}` is required.")
        return value


GrantHandler = Callable[[TokenRequest], Awaitable[dict[str, Any]]]
