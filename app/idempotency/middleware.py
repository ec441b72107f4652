"""The HTTP side of idempotency keys: a pure ASGI middleware that answers repeats, and the
router dependency that puts a new key into the request's own transaction."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import timedelta

from fastapi import FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.access import bearer_token
from app.auth.errors import Unauthenticated
from app.auth.models import IdempotencyKey
from app.auth.principal import Principal
from app.auth.rules import AccessRecord
from app.auth.service import TokenService
from app.auth.state import auth_state
from app.core.db import SessionDep, before_commit
from app.core.errors import PROBLEM_BASE, AppError, PreparedAnswer, problem
from app.core.state import app_state
from app.idempotency.errors import InvalidKey, KeyInUse, KeyReused, ResponseNotKept
from app.idempotency.service import (
    Claim,
    complete,
    find_key,
    insert_processing,
    is_stale,
    request_hash,
)

log = logging.getLogger("app.idempotency")

HEADER = b"idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Where keys apply: POSTs to the API (nothing else under /api/ writes with a POST).
PREFIX = "/api/"
# Responses that carry a secret shown only once (a new token, an enrolment code, a webhook's
# signing secret): never stored. The key still makes the request happen once; a repeat gets a
# 409.
SECRET_RESPONSES = re.compile(r"/api/v1/tokens|/api/v1/patients/[^/]+/enrolments|/api/v1/webhooks")
# The scope-state entries the middleware leaves for the router dependency: a new key's claim,
# or the answer a known (or invalid) key already has.
CLAIM = "idempotency"
ANSWER = "idempotency-answer"

_KEY = re.compile(r"[\x20-\x7e]{1,255}")  # printable ASCII; the column holds 255


def parse_key(values: list[bytes]) -> str | None:
    """The key from the header's values, or None when it is not a valid key.

    The IETF draft sends it as a structured-field string (``"abc"``); a bare ``abc`` is the
    same key, as most clients send it that way.
    """
    if len(values) != 1:
        return None
    try:
        text = values[0].decode("ascii")
    except UnicodeDecodeError:
        return None
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = re.sub(r'\\(["\\])', r"\1", text[1:-1])
    return text if _KEY.fullmatch(text) else None


class IdempotencyMiddleware:
    """Looks up the ``Idempotency-Key`` of a POST: a new key runs the request and stores its
    response; a known one's answer (the replay, a 409, a 422) is left for the router
    dependency to give, after the access check.

    Sits inside the telemetry, CORS and limit middlewares (so replays get a request id and
    oversized bodies are refused before they are buffered here).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].startswith(PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        values = [value for name, value in scope["headers"] if name == HEADER]
        if not values:
            await self.app(scope, receive, send)
            return

        body = await _read_body(receive)
        if body is None:
            return  # the client went away before sending the whole body
        receive = _replaying(body, receive)
        digest = request_hash(scope["method"], scope["path"], scope["query_string"], body)
        app: FastAPI = scope["app"]

        # The lookup's own short transaction (it may delete an expired key).
        async with app_state(app).sessionmaker() as session, session.begin():
            principal = await _principal(session, app, scope)
            key = parse_key(values)
            row = (
                await find_key(session, principal.token_id, key)
                if principal is not None and key is not None
                else None
            )
            answer = None if row is None else _answer_for(row, digest)

        if principal is None:
            # No valid token: the access dependency answers 401 (and audits it); a key
            # means nothing without the token it belongs to.
            await self.app(scope, receive, send)
        elif key is None or answer is not None:
            # Answered by the router dependency, after the access check: a replay is
            # authorised and audited like any other request (see store_key_with_write).
            scope.setdefault("state", {})[ANSWER] = answer or _problem(InvalidKey())
            await self.app(scope, receive, send)
        else:
            claim = Claim(principal.token_id, key, digest)
            await self._run(claim, scope, receive, send)

    async def _run(self, claim: Claim, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app for a new key; on success store its response before sending it.

        Storing first means a client that has the response can only ever get it again. When
        the app fails (4xx/5xx) its transaction was rolled back with the key in it: nothing
        is stored and the client may retry, corrected or not, with the same key.
        """
        scope.setdefault("state", {})[CLAIM] = claim
        app: FastAPI = scope["app"]
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            # Buffered whole: responses to POSTs here are small JSON documents.
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            status: int = start["status"]
            if claim.inserted and 200 <= status < 300:
                # If this fails the write stands and its key stays `processing`: a retry gets
                # a 409 saying so. The client still gets this response.
                keep = SECRET_RESPONSES.fullmatch(scope["path"]) is None
                try:
                    await complete(
                        app_state(app).sessionmaker,
                        claim,
                        status,
                        body if keep else None,
                        _content_type(start) if keep else None,
                    )
                except Exception as exc:
                    log.warning("storing an idempotent response failed: %s", type(exc).__name__)
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)


def _answer_for(row: IdempotencyKey, digest: str) -> Response:
    """The answer to a key already stored: a replay, a 422 or a 409."""
    if row.request_hash != digest:
        return _problem(KeyReused())
    if row.state == "processing":
        if is_stale(row):
            # The row commits only with the write: the request was applied, its response lost.
            return _problem(
                KeyInUse(
                    "The request with this Idempotency-Key was applied, but the server stopped "
                    "before storing its response. Read the resource to see the result."
                )
            )
        return _problem(KeyInUse())
    if row.response_body is None:
        return _problem(ResponseNotKept())
    headers = {REPLAYED_HEADER: "true"}
    if row.response_content_type:
        headers["Content-Type"] = row.response_content_type
    return Response(row.response_body, status_code=row.response_status or 200, headers=headers)


async def _principal(session: AsyncSession, app: FastAPI, scope: Scope) -> Principal | None:
    try:
        token = bearer_token(Request(scope))
        return await TokenService(session, auth_state(app).token_cache).resolve(token)
    except Unauthenticated:
        return None


def _content_type(start: Message) -> str | None:
    for name, value in start.get("headers", ()):
        if name.lower() == b"content-type":
            content_type: str = value.decode("latin-1")
            return content_type
    return None


def _problem(exc: AppError) -> Response:
    # As the app's AppError handler renders it (this runs outside the app).
    return problem(
        exc.status,
        exc.title,
        exc.detail,
        type_=PROBLEM_BASE + exc.slug,
        errors=exc.errors,
        headers=exc.headers,
    )


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the real one (which only
    has a disconnect left to say)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def store_key_with_write(request: Request, _session: SessionDep) -> None:
    """Router dependency: a request carrying a new key inserts it in its own transaction,
    just before the commit (so the key and the write commit together or not at all); one
    whose key already has an answer (a replay, a 409, a 422) gets it here.

    It runs after the access dependency, so an answer goes only to a caller still allowed to
    make the request, and leaves its audit row like any other. A replay writes nothing but
    hands over the stored response: its row says ``read``.

    It depends on the session so that every route it guards has the request's session,
    whose commit runs the hook.
    """
    state = request.scope.get("state", {})
    answer: Response | None = state.get(ANSWER)
    if answer is not None:
        record: AccessRecord | None = getattr(request.state, "access", None)
        if record is not None and 200 <= answer.status_code < 300:
            record.rule = replace(record.rule, action="read")
        raise PreparedAnswer(answer)
    claim: Claim | None = state.get(CLAIM)
    if claim is None:
        return
    retention = timedelta(hours=app_state(request).settings.idempotency_retention_hours)

    async def insert_key(session: AsyncSession, status: int) -> None:
        if 200 <= status < 300:  # only a success is replayed; see IdempotencyMiddleware._run
            await insert_processing(session, claim, retention)

    before_commit(request, insert_key)
