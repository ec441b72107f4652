"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.telemetry import route_template

logger = logging.getLogger("app.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "urn:outcomes:problem:"

Loc = Sequence[str | int]


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def field_error(loc: Loc, msg: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg}


class AppError(Exception):
    """An expected error; the handler turns it into problem+json. Subclass per domain."""

    status = 400
    slug = "bad-request"
    title = "Bad request"
    headers: dict[str, str] | None = None

    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class NotFound(AppError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(AppError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class Unprocessable(AppError):
    status = 422
    slug = "validation-error"
    title = "Request validation failed"

    @classmethod
    def at(cls, loc: Loc, msg: str) -> Unprocessable:
        return cls(msg, [field_error(loc, msg)])


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str = "about:blank",
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProblemResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return ProblemResponse(body, status_code=status, headers=headers)


def clean_msg(msg: str) -> str:
    # pydantic prefixes messages from our own validators; the prefix says nothing to a client.
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def validation_errors(raw: Sequence[Any]) -> list[dict[str, Any]]:
    """pydantic errors as {loc, msg}: never the rejected input, which may be PHI."""
    return [field_error(err["loc"], clean_msg(err["msg"])) for err in raw]


def describe(errors: list[dict[str, Any]]) -> str:
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """An error response before it is formatted (problem+json, or a registered format)."""

    status: int
    title: str
    detail: str
    type_: str = "about:blank"
    errors: list[dict[str, Any]] = field(default_factory=list)
    headers: Mapping[str, str] | None = None


ErrorFormatter = Callable[[ErrorReport], Response]


def register_error_format(app: FastAPI, path_prefix: str, formatter: ErrorFormatter) -> None:
    """Errors on paths under ``path_prefix`` are formatted by ``formatter`` instead of as
    problem+json (the FHIR API answers OperationOutcome), by the same handlers and hooks."""
    app.state.error_formats = {**getattr(app.state, "error_formats", {}), path_prefix: formatter}


def error_response(request: Request, report: ErrorReport) -> Response:
    """The response for ``report``: in the format registered for the request's path, else
    problem+json (handlers outside this module use it too)."""
    formats: dict[str, ErrorFormatter] = getattr(request.app.state, "error_formats", {})
    path: str = request.scope.get("path", "")
    for prefix, formatter in formats.items():
        if path.startswith(prefix):
            return formatter(report)
    return problem(
        report.status,
        report.title,
        report.detail,
        type_=report.type_,
        errors=report.errors,
        headers=report.headers,
    )


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    report = ErrorReport(
        exc.status, exc.title, exc.detail, PROBLEM_BASE + exc.slug, exc.errors, exc.headers
    )
    return error_response(request, report)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc.errors())
    report = ErrorReport(
        422, Unprocessable.title, describe(errors), PROBLEM_BASE + Unprocessable.slug, errors
    )
    return error_response(request, report)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) else title
    return error_response(request, ErrorReport(exc.status_code, title, detail, headers=exc.headers))


class PreparedAnswer(Exception):
    """A response decided before the route's handler ran (an Idempotency-Key's stored answer),
    raised by a dependency once access is checked: sent as it is, with the hooks (the audit
    row) of any other answer."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def _prepared(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PreparedAnswer)
    return exc.response


async def _unhandled(request: Request, exc: Exception) -> Response:
    # Type and stack only: exception messages (e.g. a driver's "[parameters: ...]") may
    # quote patient data, and logs must not carry PHI.
    stack = "".join(traceback.format_tb(exc.__traceback__))
    # This answer is sent by Starlette's outermost middleware, around the one that adds
    # X-Request-ID: it carries the id itself, and the log line names it, so a report of the
    # failure can be matched to its stack.
    request_id = request.scope.get("state", {}).get("request_id", "")
    logger.error(
        "unhandled %s on %s %s (request %s)\n%s",
        type(exc).__name__,
        request.method,
        route_template(request.scope),
        request_id,
        stack,
    )
    detail = "The server could not complete the request."
    headers = {"X-Request-ID": request_id} if request_id else None
    return error_response(
        request, ErrorReport(500, "Internal server error", detail, headers=headers)
    )


ErrorHook = Callable[[int], Awaitable[None]]
Handler = Callable[[Request, Exception], Awaitable[Response]]


def on_error(request: Request, hook: ErrorHook) -> None:
    """Run ``hook(status)`` when this request ends in an error response or a
    ``PreparedAnswer`` (the request's own transaction has been rolled back by then; the audit
    trail records the answer apart)."""
    # In the scope's state: the handler's Request object is not the dependency's.
    hooks: list[ErrorHook] = request.scope.setdefault("state", {}).setdefault("on_error", [])
    hooks.append(hook)


def _with_hooks(handler: Handler) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        response = await handler(request, exc)
        for hook in request.scope.get("state", {}).get("on_error", ()):
            await hook(response.status_code)
        return response

    return handle


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _with_hooks(_app_error))
    app.add_exception_handler(RequestValidationError, _with_hooks(_validation_error))
    app.add_exception_handler(StarletteHTTPException, _with_hooks(_http_error))
    app.add_exception_handler(PreparedAnswer, _with_hooks(_prepared))
    app.add_exception_handler(Exception, _with_hooks(_unhandled))


FOREIGN_KEY_VIOLATION = "23503"  # PostgreSQL's SQLSTATE


def is_foreign_key_violation(exc: BaseException) -> bool:
    """An IntegrityError that is a foreign key naming a row that does not exist."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) == FOREIGN_KEY_VIOLATION:  # asyncpg
        return True
    # sqlite3: the extended error name (Python 3.11+), else the message.
    name = getattr(orig, "sqlite_errorname", None)
    return name == "SQLITE_CONSTRAINT_FOREIGNKEY" or "FOREIGN KEY constraint failed" in str(orig)
