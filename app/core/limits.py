"""Resource limits (OWASP API4): request body size, per-token rate limit, query time.

Both middlewares are pure ASGI and answer before the application runs (nothing is read from
or written to the database for a rejected request):

- ``BodySizeLimitMiddleware``: a body over ``max_body_bytes`` is a 413 problem. A declared
  ``Content-Length`` is checked up front; a body without one (chunked) is counted as it
  streams in and refused as soon as it passes the limit, so no more than the limit is read.
- ``RateLimitMiddleware``: a token bucket per bearer token (keyed by the token's SHA-256,
  never the token) and, for requests without one, per client address. Over the limit: 429
  with ``Retry-After``. The buckets live in the process: with N workers the effective limit
  is N times the setting; a limit shared by all workers belongs in the proxy (or Redis).

A PostgreSQL ``statement_timeout`` bounds every query (``app/core/db.py``); a query it
cancels becomes a 503 problem (``QueryTimeout``), not a 500, as does a database that cannot
be reached (``DatabaseUnavailable``; app/core/outages.py).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PROBLEM_BASE, ErrorReport, error_response, problem

# Query time: a query cancelled by PostgreSQL's statement_timeout, or a database that cannot
# be reached, is a 503 with Retry-After (app/core/outages.py says which errors are; answered
# by app/core/errors.py). Their names stay importable from here.
from app.core.errors import DatabaseUnavailable as DatabaseUnavailable
from app.core.errors import QueryTimeout as QueryTimeout
from app.core.errors import ServiceUnavailable as ServiceUnavailable

# Where the limits apply: the API and FHIR (not the health checks a load balancer polls).
LIMITED_PREFIXES = ("/api/", "/fhir/")


# --- Body size -----------------------------------------------------------------------------


class PayloadTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a streamed body passes the limit. An HTTPException, so
    FastAPI's body parsing lets it through (anything else there becomes a 400)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _too_large_detail(max_bytes))


def _too_large_detail(max_bytes: int) -> str:
    return f"The request body is larger than the limit of {max_bytes} bytes."


def _respond(scope: Scope, report: ErrorReport) -> Response:
    """problem+json, or the error format registered for the path (FHIR's OperationOutcome)."""
    if "app" not in scope:  # not under a Starlette app (unit tests)
        return problem(
            report.status, report.title, report.detail, type_=report.type_, headers=report.headers
        )
    return error_response(Request(scope), report)


def too_large_response(scope: Scope, max_bytes: int) -> Response:
    # The rest of the body is not read: the connection cannot carry another request.
    report = ErrorReport(
        413,
        "Content too large",
        _too_large_detail(max_bytes),
        PROBLEM_BASE + "payload-too-large",
        headers={"Connection": "close"},
    )
    return _respond(scope, report)


def declared_length(scope: Scope) -> int | None:
    raw = Headers(scope=scope).get("content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None  # the server refuses a malformed length; the count below still applies


def _is_payload_too_large(exc: BaseException) -> bool:
    if isinstance(exc, PayloadTooLarge):
        return True
    if isinstance(exc, BaseExceptionGroup):  # raised from a task group
        return all(_is_payload_too_large(e) for e in exc.exceptions)
    return False


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await too_large_response(scope, self.max_bytes)(scope, receive, send)
            return

        received = 0
        exceeded = False  # the body passed the limit
        started = False  # a response has begun (the app's, or ours in its place)
        replaced = False  # the app's response is being swallowed: ours went out instead

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise PayloadTooLarge(self.max_bytes)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                if exceeded and not started:
                    # The app answered PayloadTooLarge itself (an error handler): one 413 shape.
                    started = replaced = True
                    await too_large_response(scope, self.max_bytes)(scope, receive, send)
                    return
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BaseException as exc:
            if not _is_payload_too_large(exc) or started:
                raise
            started = True
            await too_large_response(scope, self.max_bytes)(scope, receive, send)


# --- Rate limit ----------------------------------------------------------------------------


class TokenBuckets:
    """Token buckets keyed by string, in bounded memory.

    A bucket holds up to ``burst`` requests and refills at ``per_minute / 60`` per second.
    A bucket left alone until it is full again is indistinguishable from a new one, so it is
    dropped; beyond ``max_keys`` live buckets the least recently used goes first (that key
    starts again with a full bucket).
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be > 0 and burst >= 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self.clock = clock
        self._refill_seconds = self.burst / self.rate
        # key -> (tokens left, when counted); ordered by when counted, oldest first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Spend one request of ``key``'s bucket: 0.0 if allowed, else seconds until it is."""
        now = self.clock()
        self._evict_idle(now)
        entry = self._buckets.pop(key, None)
        tokens = (
            self.burst
            if entry is None
            else min(self.burst, entry[0] + (now - entry[1]) * self.rate)
        )
        if tokens >= 1.0:
            tokens -= 1.0
            wait = 0.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def _evict_idle(self, now: float) -> None:
        buckets = self._buckets
        while buckets:
            _tokens, counted_at = next(iter(buckets.values()))
            if now - counted_at < self._refill_seconds:
                return
            buckets.popitem(last=False)


def rate_limit_key(scope: Scope) -> str:
    """The presented bearer token's SHA-256, else the client's address."""
    header = Headers(scope=scope).get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        return "token:" + hashlib.sha256(token.encode()).hexdigest()
    client = scope.get("client")
    return "client:" + (client[0] if client else "unknown")


def too_many_response(scope: Scope, wait_seconds: float) -> Response:
    retry_after = max(1, math.ceil(wait_seconds))
    report = ErrorReport(
        429,
        "Too many requests",
        f"The rate limit for this token was reached; retry in {retry_after} s.",
        PROBLEM_BASE + "rate-limited",
        headers={"Retry-After": str(retry_after)},
    )
    return _respond(scope, report)


class RateLimitMiddleware:
    """429 once a token (or, without one, a client address) has spent its bucket.

    Unauthenticated requests are limited by client address with the same settings: each of
    them costs a token lookup and an audit row. Behind a reverse proxy that address is the
    proxy's unless uvicorn is told to trust its ``X-Forwarded-For`` (``--forwarded-allow-ips``).
    CORS preflights (``OPTIONS``) carry no token and are never limited.
    """

    def __init__(self, app: ASGIApp, per_minute: float, burst: int) -> None:
        self.app = app
        self.buckets = TokenBuckets(per_minute, burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] != "OPTIONS"
            and scope["path"].startswith(LIMITED_PREFIXES)
        ):
            wait = self.buckets.take(rate_limit_key(scope))
            if wait > 0:
                await too_many_response(scope, wait)(scope, receive, send)
                return
        await self.app(scope, receive, send)
