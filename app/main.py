"""The ASGI application: ``create_app()`` wires settings, database, routers and error handlers."""

from __future__ import annotations

import gc
import inspect
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException as StarletteHTTPException

import app.models  # noqa: F401  (every table: api_tokens' foreign keys name oauth_clients and devices)
from app import ops
from app.analytics.days import refreshing_in_background
from app.analytics.registry import policies
from app.analytics.router import router as analytics_router
from app.audit.router import router as audit_router
from app.auth.access import authorize
from app.auth.cache import TokenCache
from app.auth.revocations import RevocationListener
from app.auth.router import me_router
from app.auth.router import router as tokens_router
from app.auth.state import AuthState, set_auth_state
from app.core import pg
from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_read_sessionmaker, create_sessionmaker
from app.core.errors import PROBLEM_MEDIA_TYPE, OutageMiddleware, install_error_handlers
from app.core.limits import BodySizeLimitMiddleware, RateLimitMiddleware
from app.core.state import AppState, set_app_state
from app.core.telemetry import TelemetryMiddleware, withhold_exception_messages
from app.courses.router import router as courses_router
from app.credentials.purge import purging_in_background as purging_dead_credentials
from app.dashboard import install_pages
from app.dashboard.headers import BrowserPageHeaders
from app.dashboard.router import PAGE_PREFIXES
from app.enrolment.grants import GRANTS as ENROLMENT_GRANTS
from app.enrolment.router import router as enrolment_router
from app.fhir.router import install_fhir
from app.idempotency.middleware import IdempotencyMiddleware, store_key_with_write
from app.idempotency.service import purging_in_background
from app.oauth.discovery import router as discovery_router
from app.oauth.key_sets import KeySets
from app.oauth.registration import router as clients_router
from app.oauth.router import install_oauth
from app.oauth.state import OAuthState, set_oauth_state
from app.observations.router import router as observations_router
from app.patients.router import router as patients_router
from app.push.dispatcher import Dispatcher
from app.push.fhir_router import router as subscriptions_router
from app.push.router import router as webhooks_router
from app.recording.router import router as recording_router
from app.summary.router import router as summary_router
from app.treatment_sessions.router import router as sessions_router

DESCRIPTION = """
Outcomes tracks how patients respond to a course of ozone infiltrations: pain scores and
mobility measures, session logs, and the course's session frequency.

Errors are RFC 9457 `application/problem+json` with an `errors` list naming each field.

The schema states what the server accepts: a request it admits is served (or refused for the
state of the records, e.g. 404 or 409), one it does not admit is refused. Strings never hold a
NUL character (U+0000). What no JSON Schema can state is in the field's description: values
that must not be in the future, references to other records, parameters read together.
"""

# Free text may hold any character but NUL (API.md, "Failure semantics"): the pattern given to
# every request string that no format, enum or pattern of its own already bounds.
NO_NUL = "^[^\\x00]*$"
# Request bodies are read with surrounding whitespace stripped (Unicode White_Space, as
# pydantic strips it), so a required text must hold one character that is neither.
_BLANK = "\\t-\\r\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
NOT_BLANK = f"^[^\\x00]*[^\\x00{_BLANK}][^\\x00]*$"

# The shape of every error (app/core/errors.py), so clients and schema-driven tests can rely on it.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
}


def _problem_doc(description: str, **headers: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}},
    }
    if headers:
        doc["headers"] = {
            name: {"description": text, "schema": {"type": "integer"}}
            for name, text in headers.items()
        }
    return doc


_problem = _problem_doc("Invalid request: `errors` names each field")
# Answers any /api request may get, whatever the operation.
API_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _problem_doc("The body could not be read (not UTF-8)"),
    401: _problem_doc("No token, or an unknown, expired or revoked one"),
    403: _problem_doc("The token's role may not do this"),
    404: _problem_doc("No such resource (or not this patient token's)"),
    413: _problem_doc("The request body is over the size limit"),
    429: _problem_doc("This token's rate limit is spent", **{"Retry-After": "Seconds to wait"}),
    500: {
        **_problem_doc("An internal error (never an expected one)"),
        "headers": {
            "X-Request-ID": {
                "description": "The request's id, which the log line of the error names",
                "schema": {"type": "string"},
            }
        },
    },
    503: _problem_doc("The database took too long to answer", **{"Retry-After": "Seconds to wait"}),
}
# Any API write may conflict: a duplicate, a course that is closed, an Idempotency-Key in flight.
CONFLICT = _problem_doc("Conflicts with the current state (or an Idempotency-Key in flight)")


def _without_nul(schema: dict[str, Any], components: dict[str, Any], seen: set[str]) -> None:
    """Give every free-text string of a request schema (and of the schemas it uses) NO_NUL,
    or NOT_BLANK where it may not be empty."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name not in seen:
            seen.add(name)
            _without_nul(components[name], components, seen)
        return
    if schema.get("type") == "string" and not {"format", "enum", "const", "pattern"} & set(schema):
        schema["pattern"] = NOT_BLANK if schema.get("minLength", 0) >= 1 else NO_NUL
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _without_nul(schema[key], components, seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, []):
            _without_nul(branch, components, seen)
    for sub in schema.get("properties", {}).values():
        _without_nul(sub, components, seen)


# OpenAPI links: where a created resource's id is used next. Clients read them as the API's
# map; schemathesis's stateful phase follows them (tests/test_fuzz.py).
_PATIENT = {"patient_id": "$response.body#/id"}
_COURSE = {"course_id": "$response.body#/id"}
_LINKS: dict[tuple[str, str, str], list[tuple[str, str, dict[str, str]]]] = {
    ("post", "/api/v1/patients", "201"): [
        ("get", "/api/v1/patients/{patient_id}", _PATIENT),
        ("patch", "/api/v1/patients/{patient_id}", _PATIENT),
        ("post", "/api/v1/patients/{patient_id}/courses", _PATIENT),
        ("get", "/api/v1/patients/{patient_id}/courses", _PATIENT),
        ("post", "/api/v1/patients/{patient_id}/observations", _PATIENT),
        ("post", "/api/v1/patients/{patient_id}/observations/batch", _PATIENT),
        ("get", "/api/v1/patients/{patient_id}/observations", _PATIENT),
        ("get", "/api/v1/patients/{patient_id}/trends", _PATIENT),
        ("get", "/api/v1/patients/{patient_id}/summary", _PATIENT),
        ("get", "/fhir/R4/Patient/{patient_id}", _PATIENT),
        ("get", "/fhir/R4/Patient/{patient_id}/$everything", _PATIENT),
    ],
    ("post", "/api/v1/patients/{patient_id}/courses", "201"): [
        ("get", "/api/v1/courses/{course_id}", _COURSE),
        ("patch", "/api/v1/courses/{course_id}", _COURSE),
        ("post", "/api/v1/courses/{course_id}/frequency", _COURSE),
        ("get", "/api/v1/courses/{course_id}/frequency-history", _COURSE),
        ("post", "/api/v1/courses/{course_id}/sessions", _COURSE),
        ("get", "/api/v1/courses/{course_id}/sessions", _COURSE),
        ("get", "/api/v1/courses/{course_id}/recommendation", _COURSE),
        (
            "get",
            "/api/v1/patients/{patient_id}/trends",
            {"patient_id": "$response.body#/patient_id", "course_id": "$response.body#/id"},
        ),
    ],
    ("post", "/api/v1/courses/{course_id}/sessions", "201"): [
        ("get", "/api/v1/courses/{course_id}/sessions", {"course_id": "$response.body#/course_id"}),
        ("get", "/api/v1/courses/{course_id}", {"course_id": "$response.body#/course_id"}),
    ],
    ("post", "/api/v1/tokens", "201"): [
        ("delete", "/api/v1/tokens/{token_id}", {"token_id": "$response.body#/id"}),
    ],
    ("post", "/api/v1/clients", "201"): [
        ("delete", "/api/v1/clients/{client_id}", {"client_id": "$response.body#/client_id"}),
    ],
}


def _add_links(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    for (method, path, status), targets in _LINKS.items():
        response = paths[path][method]["responses"][status]
        links = response.setdefault("links", {})
        for target_method, target_path, parameters in targets:
            operation_id = paths[target_path][target_method]["operationId"]
            links[operation_id] = {"operationId": operation_id, "parameters": parameters}


def _document_api(app: FastAPI) -> None:
    """The bearer token on every /api and /fhir operation, a 409 on every POST and PATCH under
    /api (unless its router documents one already), and the Problem schema wherever an answer
    is documented as problem+json without one (the operations endpoints')."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["bearerAuth"] = {"type": "http", "scheme": "bearer"}
            _add_links(schema)
            seen: set[str] = set()  # the request components given NO_NUL already
            for path, item in schema["paths"].items():
                for method, operation in item.items():
                    for response in operation["responses"].values():
                        problem = response.get("content", {}).get(PROBLEM_MEDIA_TYPE)
                        if problem is not None and not problem.get("schema"):
                            problem["schema"] = PROBLEM_SCHEMA
                    if not path.startswith(("/api/", "/fhir/")):
                        continue
                    components = schema["components"].get("schemas", {})
                    for parameter in operation.get("parameters", []):
                        if parameter["in"] in ("query", "path"):
                            _without_nul(parameter["schema"], components, seen)
                    for media in operation.get("requestBody", {}).get("content", {}).values():
                        _without_nul(media["schema"], components, seen)
                    operation.setdefault("security", [{"bearerAuth": []}])
                    if path.startswith("/api/") and method in ("post", "patch"):
                        operation["responses"].setdefault("409", CONFLICT)
        return build()

    app.openapi = openapi  # type: ignore[method-assign]


_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    """405 naming every method of the resource, as RFC 9110 asks: Starlette names only those
    of the first route that matched the path. The methods come from the OpenAPI paths."""
    app: FastAPI = request.app
    table: list[tuple[re.Pattern[str], str]] | None = getattr(app.state, "allow", None)
    if table is None:
        table = []
        # Literal segments first: `/Patient/$export` is not `/Patient/{patient_id}`.
        paths = sorted(app.openapi()["paths"].items(), key=lambda pair: pair[0].count("{"))
        for path, item in paths:
            # The path's text is literal (`$export` has a `$`); only its {parameters} vary.
            parts = re.split(r"\{[^/}]+\}", path)
            pattern = re.compile("^" + "[^/]+".join(re.escape(part) for part in parts) + "$")
            table.append((pattern, ", ".join(sorted(m.upper() for m in item if m in _METHODS))))
        app.state.allow = table
    allow = next((methods for pattern, methods in table if pattern.match(request.url.path)), None)
    if allow is not None and isinstance(exc, StarletteHTTPException):  # else /docs and the like
        exc.headers = {**(exc.headers or {}), "Allow": allow}
    # Answered by the app's own HTTPException handler (its format, its hooks).
    response = app.exception_handlers[StarletteHTTPException](request, exc)
    return await response if inspect.isawaitable(response) else response


def _tune_garbage_collector() -> None:
    """What is loaded by start-up (modules, routes, models, policies) lives as long as the
    process: frozen, the collector stops re-scanning it on every collection; and a larger
    first generation collects less often under load (-5 to -15% CPU a request, bench/README).
    Reference cycles are still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _revocation_listener(settings: Settings, cache: TokenCache) -> RevocationListener | None:
    """PostgreSQL, with the cache on: hear revocations as they commit (app/auth/revocations)."""
    dsn = pg.postgres_dsn(settings)
    if dsn is None or settings.token_cache_seconds <= 0 or settings.token_cache_pushed_seconds <= 0:
        return None
    return RevocationListener(dsn, cache, settings.db_connect_timeout_seconds)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    token_cache = TokenCache(
        ttl=settings.token_cache_seconds, pushed_ttl=settings.token_cache_pushed_seconds
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        policies()  # a broken policy file stops the start, not a later request
        # The engine belongs to the running app, not to the import.
        engine = create_engine(settings)
        state = AppState(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            read_sessionmaker=create_read_sessionmaker(engine),
            raw_pool=await pg.create_pool(settings),  # None on SQLite
        )
        set_app_state(app, state)
        listener = _revocation_listener(settings, token_cache)
        set_auth_state(app, AuthState(token_cache, listener))
        if listener is not None:
            listener.start()
        key_sets = KeySets.from_settings(settings)  # clients' jwks_url, fetched and kept
        set_oauth_state(app, OAuthState(key_sets))
        # Push: every process delivers the outbox (app/push/dispatcher.py).
        dispatcher = Dispatcher(state.sessionmaker, settings) if settings.push_dispatch else None
        if dispatcher is not None:
            dispatcher.start()
        _tune_garbage_collector()
        try:
            # Expired Idempotency-Keys and dead credentials are purged, and settled days of
            # long courses recomputed, while the app runs (stopped before dispose).
            async with (
                purging_in_background(state.sessionmaker, settings.idempotency_purge_seconds),
                purging_dead_credentials(state.sessionmaker, settings),
                refreshing_in_background(
                    state.sessionmaker,
                    state.read_sessionmaker,
                    settings.value_days_refresh_seconds,
                    settings.value_days_settle_seconds,
                ),
            ):
                yield
        finally:
            if dispatcher is not None:
                await dispatcher.stop()
            if listener is not None:
                await listener.stop()
            await key_sets.aclose()
            if state.raw_pool is not None:
                await state.raw_pool.close()
            await engine.dispose()

    app = FastAPI(
        title="Outcomes API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses={422: _problem},
        # /docs and /redoc are served from the package's own files (app/dashboard), not a CDN.
        docs_url=None,
        redoc_url=None,
    )
    withhold_exception_messages()  # no PHI in logs, whoever logs the exception
    install_error_handlers(app)
    app.add_exception_handler(405, _method_not_allowed)
    # Middlewares, innermost first (the last added runs first): limits answer before the app
    # reads a body or touches the database; CORS and telemetry (request id, metrics, access
    # log) wrap them so 413s and 429s carry the same headers and are counted too.
    # Idempotency-Key replays sit inside the limits: an oversized body is refused before it
    # is buffered, and a replay is rate limited like any request.
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(OutageMiddleware)  # a 503 for the database work of those inside it
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.rate_limit_per_minute > 0:
        app.add_middleware(
            RateLimitMiddleware,
            per_minute=settings.rate_limit_per_minute,
            burst=settings.rate_limit_burst,
        )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=["Retry-After", "X-Request-ID", "Idempotent-Replayed"],
        )
    app.add_middleware(TelemetryMiddleware)
    # The dashboard's and the API docs' pages and assets: CSP, no framing, no referrer.
    app.add_middleware(BrowserPageHeaders, prefixes=PAGE_PREFIXES)

    # One access decision for every business route (app/auth/rules.py says who may do what).
    api = APIRouter(
        prefix="/api/v1",
        # A request carrying a new Idempotency-Key stores it with its write (app/idempotency).
        dependencies=[Depends(authorize), Depends(store_key_with_write)],
        responses=API_ERRORS,
    )
    # Routes are matched in order: the most frequent requests (recording, trend reads) first.
    api.include_router(recording_router)  # observations, sessions, trends
    api.include_router(observations_router)  # reads, and /instruments
    api.include_router(analytics_router)
    api.include_router(patients_router)
    api.include_router(courses_router)
    api.include_router(sessions_router)
    api.include_router(summary_router)
    api.include_router(enrolment_router)
    api.include_router(tokens_router)
    api.include_router(me_router)
    api.include_router(clients_router)
    api.include_router(audit_router)
    api.include_router(webhooks_router)
    app.include_router(api)
    install_fhir(app)  # /fhir/R4, behind the same access dependency; errors as OperationOutcome
    app.include_router(subscriptions_router)  # /fhir/R4 Subscriptions (app/push)
    # /oauth/token: no bearer token; errors as RFC 6749 says. Patient apps' grants too.
    install_oauth(app, ENROLMENT_GRANTS)
    app.include_router(discovery_router)  # .well-known/smart-configuration: open
    app.include_router(ops.router)
    install_pages(app)  # /dashboard, its assets, /docs and /redoc (not in the schema)
    _document_api(app)
    return app
