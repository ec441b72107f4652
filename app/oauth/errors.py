"""Token endpoint errors as RFC 6749 §5.2 says: `{"error", "error_description"}`, never
problem+json (OAuth clients parse this shape), and never cached."""

from __future__ import annotations

from typing import Literal

from fastapi.responses import JSONResponse

from app.core.errors import ErrorReport

ErrorCode = Literal[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "temporarily_unavailable",
    "server_error",
    "slow_down",
]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """A refused token request. `invalid_client` is a 401 (RFC 6749 §5.2), the rest 400;
    a caller that keeps failing gets a 429 with Retry-After."""

    def __init__(
        self,
        error: ErrorCode,
        description: str,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status or (401 if error == "invalid_client" else 400)
        self.headers = headers or {}


def oauth_error_response(exc: OAuthError) -> JSONResponse:
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers={**NO_STORE, **exc.headers},
    )


def report_as_oauth(report: ErrorReport) -> JSONResponse:
    """An error the core handlers report under /oauth/ (a 503 when the database is down, a
    413, a 500) in the shape OAuth clients read."""
    error: ErrorCode
    if report.status == 503:
        error = "temporarily_unavailable"
    elif report.status >= 500:
        error = "server_error"
    else:
        error = "invalid_request"
    return JSONResponse(
        {"error": error, "error_description": report.detail},
        status_code=report.status,
        headers={**NO_STORE, **(report.headers or {})},
    )
