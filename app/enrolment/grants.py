"""The token endpoint's grants for patient apps (GRANTS, added to app/oauth/router.py's by
app/main.py):

- `urn:outcomes:grant-type:enrolment-code` (`code`, `device_name`): enrols a device;
- `refresh_token` (`refresh_token`): a new pair for the device, the old refresh token dies.

Both answer RFC 6749 §5.1 `{"access_token", "token_type", "refresh_token", "expires_in",
"scope", "patient"}` (`patient`: SMART's launch context, the patient the token is bound to).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from app.auth.service import TokenService
from app.auth.state import auth_state
from app.core.schemas import text_problem
from app.core.state import app_state
from app.enrolment.errors import InvalidGrant
from app.enrolment.service import AppTokens, EnrolmentService, Lifetimes
from app.oauth.errors import OAuthError
from app.oauth.grants import GrantHandler, TokenRequest

ENROLMENT_GRANT = "urn:outcomes:grant-type:enrolment-code"
REFRESH_GRANT = "refresh_token"
MAX_DEVICE_NAME = 100  # the column's width


def _service(request: TokenRequest) -> EnrolmentService:
    state = app_state(request.request)
    settings = state.settings
    tokens = TokenService(request.session, auth_state(request.request).token_cache, state.raw_pool)
    lifetimes = Lifetimes(
        access=timedelta(seconds=settings.oauth_app_access_token_seconds),
        refresh=timedelta(days=settings.oauth_refresh_token_days),
    )
    return EnrolmentService(request.session, tokens, lifetimes)


def _device_name(request: TokenRequest) -> str:
    name = request.require("device_name").strip()
    if not name or len(name) > MAX_DEVICE_NAME or text_problem(name) is not None:
        raise OAuthError(
            "invalid_request",
            f"`device_name` must be 1 to {MAX_DEVICE_NAME} characters of text.",
        )
    return name


async def exchange_enrolment_code(request: TokenRequest) -> dict[str, Any]:
    code = request.require("code")
    device_name = _device_name(request)
    async with app_state(request.request).read_sessionmaker() as reader:
        return await _answer(
            request, lambda service: service.exchange_code(code, device_name, reader)
        )


async def refresh(request: TokenRequest) -> dict[str, Any]:
    presented = request.require("refresh_token")
    return await _answer(request, lambda service: service.refresh(presented))


async def _answer(
    request: TokenRequest, grant: Callable[[EnrolmentService], Awaitable[AppTokens]]
) -> dict[str, Any]:
    try:
        tokens = await grant(_service(request))
    except InvalidGrant as exc:
        # The audit row names the patient the presented secret concerned, if any; the answer
        # is the same whatever the reason.
        request.access.patient_id = exc.patient_id
        raise OAuthError("invalid_grant", InvalidGrant.DESCRIPTION) from None
    access = request.access
    access.principal = tokens.principal
    access.patient_id = tokens.patient_id
    access.resource_id = str(tokens.principal.token_id)
    access.outcome = "allowed"
    return {
        "access_token": tokens.access_token,
        "token_type": "bearer",
        "refresh_token": tokens.refresh_token,
        "expires_in": tokens.expires_in,
        "scope": tokens.principal.scope,
        "patient": str(tokens.patient_id),
    }


GRANTS: dict[str, GrantHandler] = {
    ENROLMENT_GRANT: exchange_enrolment_code,
    REFRESH_GRANT: refresh,
}
