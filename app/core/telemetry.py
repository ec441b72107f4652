"""Request ids, access log and Prometheus metrics (keyed by route template: no PHI leaves).

The template (``/api/v1/patients/{patient_id}``) is logged, never the URL: paths carry ids and
query strings can carry identifiers such as ``external_id``.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
import uuid

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("app.access")

REQUESTS = Counter(
    "outcomes_http_requests_total",
    "HTTP requests by route template and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "outcomes_http_request_duration_seconds",
    "HTTP request duration by route template",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


class WithholdExceptionMessages(logging.Filter):
    """Logs an exception as its type and stack, never its message (for the records whose
    message starts with ``prefix``, if given).

    uvicorn logs an exception that reaches it from a request ("Exception in ASGI
    application": Starlette re-raises every unhandled one after answering 500), and asyncio
    one that a task left unretrieved, with the message: a driver's message can quote the row
    it refused, that is patient data. The app's own logging already leaves messages out
    (app.core.errors). uvicorn's other errors (a failed start: a database that refuses the
    connection) keep theirs: they are about configuration, and the operator needs them.
    """

    def __init__(self, prefix: str | None = None) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        message = record.getMessage()
        if self.prefix is not None and not message.startswith(self.prefix):
            return True
        stack = "".join(traceback.format_tb(exc.__traceback__))
        withheld = f"{type(exc).__name__} (message withheld: it may carry patient data)"
        record.msg = f"{message.rstrip()}\n{withheld}\n{stack}"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


# The loggers outside the app that log a request's exception with its message.
_WITHHOLDING = {
    "uvicorn.error": WithholdExceptionMessages("Exception in ASGI application"),
    "asyncio": WithholdExceptionMessages(),
}


def withhold_exception_messages() -> None:
    """Filter the loggers that can log a request's exception message (idempotent)."""
    for name, withholding in _WITHHOLDING.items():
        logging.getLogger(name).addFilter(withholding)


def route_template(scope: Scope) -> str:
    """The matched route's full path template (``/api/v1/patients/{patient_id}``), never the URL."""
    # FastAPI ≥ 0.16x keeps the prefixed template on the effective route context.
    context = scope.get("fastapi", {}).get("effective_route_context")
    template = getattr(context, "path_format", None) or getattr(scope.get("route"), "path", None)
    return template or "<unmatched>"


def render_metrics() -> tuple[bytes, str]:
    """The exposition text; with several workers, the sum over all of them."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST


class TelemetryMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        # Responses about patients must not sit in browser or proxy caches.
        private = scope["path"].startswith(("/api/", "/fhir/"))

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                if private:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - started
            method, template = scope["method"], route_template(scope)
            REQUESTS.labels(method, template, str(status)).inc()
            LATENCY.labels(method, template).observe(seconds)
            log.info("%s %s %d %.1fms", method, template, status, seconds * 1000)
