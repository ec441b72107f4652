"""`POST /oauth/token` (RFC 6749): a form in, a token response or an RFC 6749 error out.

The grants themselves live with their domain: SMART Backend Services in
app/oauth/backend_services.py, enrolment codes and refresh tokens in app/enrolment/grants.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.formparsers import MultiPartException

from app.audit.service import audit_request
from app.auth.rules import AccessRecord, Rule
from app.core.db import SessionDep
from app.core.errors import register_error_format
from app.core.state import app_state
from app.oauth import backend_services
from app.oauth.errors import NO_STORE, OAuthError, oauth_error_response, report_as_oauth
from app.oauth.grants import GrantHandler, TokenRequest
from app.oauth.throttle import FailureThrottle

TOKEN_PATH = "/oauth/token"  # noqa: S105 (a path, not a secret)
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
MAX_FIELD = 8192  # a client assertion is a few KB; anything longer is not one

GRANTS: dict[str, GrantHandler] = {
    backend_services.GRANT_TYPE: backend_services.client_credentials,
}
TOKEN_RULE = Rule(frozenset(), "create", "token")

router = APIRouter(tags=["oauth"])

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
_TOKEN_SCHEMA = {
    "type": "object",
    "required": ["access_token", "token_type", "expires_in", "scope"],
    "properties": {
        "access_token": {"type": "string"},
        "token_type": {"type": "string", "enum": ["bearer"]},
        "expires_in": {"type": "integer"},
        "scope": {"type": "string"},
        "refresh_token": {"type": "string"},
        "patient": {"type": "string"},
    },
}


def token_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + TOKEN_PATH


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_FORM_FIELDS = (
    "grant_type", "scope", "client_assertion_type", "client_assertion", "code", "device_name",
    "refresh_token",
)  # fmt: skip
# Each field is read as given, at most MAX_FIELD characters, never with a NUL (refused before
# any grant reads it, as everywhere in this API).
_FIELD_SCHEMA = {"type": "string", "maxLength": MAX_FIELD, "pattern": "^[^\\x00]*$"}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}},
}
_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            FORM_MEDIA_TYPE: {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {name: dict(_FIELD_SCHEMA) for name in _FORM_FIELDS},
                }
            }
        },
    },
    "responses": {
        "200": _answer("A token", _TOKEN_SCHEMA),
        "400": _answer("An RFC 6749 error", _ERROR_SCHEMA),
        "401": _answer("The client could not be authenticated", _ERROR_SCHEMA),
        "429": _answer("Too many refused requests from this address", _ERROR_SCHEMA)
        | {"headers": _RETRY_AFTER},
        "503": _answer("The database cannot answer now", _ERROR_SCHEMA) | {"headers": _RETRY_AFTER},
    },
}


@router.post(
    TOKEN_PATH,
    summary="Issue an access token (RFC 6749)",
    response_class=JSONResponse,
    openapi_extra=_OPENAPI,
)
async def token(request: Request, response: Response, session: SessionDep) -> JSONResponse:
    """SMART Backend Services (`client_credentials` with a signed JWT assertion), patient app
    enrolment (`urn:outcomes:grant-type:enrolment-code`) and `refresh_token`."""
    # Every token request leaves an audit row, issued or refused.
    access = AccessRecord(rule=TOKEN_RULE, request_id=request.state.request_id)
    request.state.access = access
    audit_request(request, access)
    caller = request.client.host if request.client else "unknown"
    throttle = _throttle(request, session)
    try:
        if throttle is not None and (wait := await _retry_after(request, throttle, caller)):
            raise TooManyFailures(wait)
        form = await _read_form(request)
        handler = GRANTS.get(form.get("grant_type", ""))
        if handler is None:
            if "grant_type" not in form:
                raise OAuthError("invalid_request", "`grant_type` is required.")
            raise OAuthError("unsupported_grant_type", "This grant type is not supported.")
        body: dict[str, Any] = await handler(
            TokenRequest(form, token_url(request), caller, session, request, access)
        )
    except OAuthError as exc:
        # Answered, not raised: what the refusal wrote (a code's failed attempt, this
        # address's count) commits, and the audit row records this status.
        if throttle is not None and not isinstance(exc, TooManyFailures):
            await throttle.count_failure(caller)
        response.status_code = exc.status
        return oauth_error_response(exc)
    return JSONResponse(body, headers=NO_STORE)


class TooManyFailures(OAuthError):
    """This address was refused too often lately (app/oauth/throttle.py).

    `slow_down` (RFC 8628 §3.5, registered for the token endpoint) says what is meant: the
    request may be fine, the caller must wait before it tries again; `invalid_request` would
    say the request itself is malformed. The 429 and its Retry-After say how long, in the
    terms every HTTP client knows."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "slow_down",
            f"Too many refused requests from this address; retry in {retry_after} s.",
            status=429,
            headers={"Retry-After": str(retry_after)},
        )


def _throttle(request: Request, session: AsyncSession) -> FailureThrottle | None:
    settings = app_state(request).settings
    if settings.oauth_failure_limit <= 0:
        return None
    return FailureThrottle(
        session,
        limit=settings.oauth_failure_limit,
        window_seconds=settings.oauth_failure_window_seconds,
    )


async def _retry_after(request: Request, throttle: FailureThrottle, caller: str) -> int:
    """Checked outside the request's transaction: a grant may do slow work (hashing a code)
    before its first write, and on SQLite an open transaction holds the write lock."""
    async with app_state(request).read_sessionmaker() as reader:
        return await throttle.retry_after(caller, reader)


async def _read_form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_MEDIA_TYPE:
        raise OAuthError("invalid_request", f"Send the parameters as {FORM_MEDIA_TYPE}.")
    try:
        raw = await request.form(max_files=0, max_fields=32)
    except MultiPartException as exc:  # too many fields, or not a form
        raise OAuthError("invalid_request", "The form could not be read.") from exc
    form: dict[str, str] = {}
    for name, value in raw.multi_items():
        if not isinstance(value, str):
            raise OAuthError("invalid_request", "Files are not accepted.")
        if name in form:
            raise OAuthError("invalid_request", f"`{name}` is given more than once.")
        if len(value) > MAX_FIELD or "\x00" in value:
            raise OAuthError("invalid_request", f"`{name}` is not a valid value.")
        form[name] = value
    return form


def install_oauth(app: FastAPI, *grants: Mapping[str, GrantHandler]) -> None:
    """/oauth/token, answering the grants given as well as this package's own."""
    for more in grants:
        GRANTS.update(more)
    app.include_router(router)
    register_error_format(app, "/oauth/", report_as_oauth)
