"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.outages import DRIVER_ERRORS, outage
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


class ServiceUnavailable(AppError):
    """The database cannot answer now; the same request may succeed a second later."""

    status = 503
    title = "Service unavailable"
    headers = {"Retry-After": "1"}


class QueryTimeout(ServiceUnavailable):
    slug = "query-timeout"


class DatabaseUnavailable(ServiceUnavailable):
    slug = "database-unavailable"


class AuditUnavailable(ServiceUnavailable):
    """The request's audit row could not be written: it is refused, never served unaudited."""

    slug = "audit-unavailable"


def unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 for an exception that is a database outage (app/core/outages.py), else None
    (also for an AppError: it is an answer already, whatever caused it)."""
    kind = None if isinstance(exc, AppError) else outage(exc)
    if kind == "query-timeout":
        return QueryTimeout("The database took too long to answer; retry later.")
    if kind == "database-unavailable":
        return DatabaseUnavailable("The database cannot be reached; retry later.")
    return None


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
    return error_response(request, _report(exc))


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


def _report(exc: AppError) -> ErrorReport:
    return ErrorReport(
        exc.status, exc.title, exc.detail, PROBLEM_BASE + exc.slug, exc.errors, exc.headers
    )


def _with_request_id(request: Request, report: ErrorReport) -> ErrorReport:
    """The report with the request's id among its headers: an answer from Starlette's
    outermost middleware goes out around the one that adds it."""
    request_id = request.scope.get("state", {}).get("request_id", "")
    if not request_id:
        return report
    return replace(report, headers={**(report.headers or {}), "X-Request-ID": request_id})


def _where(request: Request) -> str:
    """The request in a log line: method, route template and id (never the URL: PHI)."""
    request_id = request.scope.get("state", {}).get("request_id", "")
    return f"{request.method} {route_template(request.scope)} (request {request_id})"


async def _unhandled(request: Request, exc: Exception) -> Response:
    """An exception no other handler took: a database outage is a 503, anything else a 500
    whose log line names the request, so a report of the failure can be matched to its
    stack."""
    down = unavailable(exc)
    if down is not None:
        # Expected while the database restarts or is overloaded: one line, no stack.
        logger.warning("%s on %s: %s", down.slug, _where(request), type(exc).__name__)
        return error_response(request, _with_request_id(request, _report(down)))
    # Type and stack only: exception messages (e.g. a driver's "[parameters: ...]") may
    # quote patient data, and logs must not carry PHI.
    stack = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("unhandled %s on %s\n%s", type(exc).__name__, _where(request), stack)
    detail = "The server could not complete the request."
    report = ErrorReport(500, "Internal server error", detail)
    return error_response(request, _with_request_id(request, report))


ErrorHook = Callable[[int], Awaitable[None]]
Handler = Callable[[Request, Exception], Awaitable[Response]]


def on_error(request: Request, hook: ErrorHook) -> None:
    """Run ``hook(status)`` when this request ends in an error response or a
    ``PreparedAnswer`` (the request's own transaction has been rolled back by then; the audit
    trail records the answer apart).

    A hook that fails turns the answer into a 503 (the request fails closed): the
    ``ServiceUnavailable`` it raises, else an ``AuditUnavailable``.
    """
    # In the scope's state: the handler's Request object is not the dependency's.
    hooks: list[ErrorHook] = request.scope.setdefault("state", {}).setdefault("on_error", [])
    hooks.append(hook)


async def _run_hooks(request: Request, response: Response) -> Response:
    hooks: list[ErrorHook] = request.scope.get("state", {}).pop("on_error", [])  # each once
    for hook in hooks:
        try:
            await hook(response.status_code)
        except Exception as exc:
            failed = exc if isinstance(exc, ServiceUnavailable) else None
            if failed is None:
                logger.error("error hook failed on %s: %s", _where(request), type(exc).__name__)
                failed = AuditUnavailable("The request could not be recorded; retry later.")
            if response.status_code != 503:  # a 503 already says "retry later"
                response = error_response(request, _with_request_id(request, _report(failed)))
    return response


def _with_hooks(handler: Handler) -> Handler:
    """The handler, then the request's error hooks. Never raises: an exception out of an
    error handler would become Starlette's plain-text 500."""

    async def handle(request: Request, exc: Exception) -> Response:
        try:
            response = await handler(request, exc)
        except Exception as failure:
            response = await _unhandled(request, failure)
        return await _run_hooks(request, response)

    return handle


class OutageMiddleware:
    """Answers a database outage that a middleware inside it meets (the Idempotency-Key
    look-up runs before the app) as the app answers its own: a 503, counted and logged as
    one line by the telemetry around it, instead of an exception Starlette's outermost
    middleware answers and then re-raises to the server's log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started or scope["type"] != "http" or unavailable(exc) is None:
                raise
            response = await _with_hooks(_unhandled)(Request(scope), exc)
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _with_hooks(_app_error))
    app.add_exception_handler(RequestValidationError, _with_hooks(_validation_error))
    app.add_exception_handler(StarletteHTTPException, _with_hooks(_http_error))
    app.add_exception_handler(PreparedAnswer, _with_hooks(_prepared))
    # The drivers' errors are answered inside the middlewares (a 503 when the database is
    # down, counted and logged like any answer); anything else by Starlette's outermost one.
    for driver_error in DRIVER_ERRORS:
        app.add_exception_handler(driver_error, _with_hooks(_unhandled))
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
