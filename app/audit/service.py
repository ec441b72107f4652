"""Writing and reading the audit trail."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from fastapi import Request
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.auth.rules import AccessRecord
from app.core import pg
from app.core.db import before_commit, new_id, table_of, utcnow
from app.core.errors import AuditUnavailable, on_error, unavailable
from app.core.pagination import paginate
from app.core.state import app_state

log = logging.getLogger("app.audit")

_INSERT_EVENT = insert(table_of(AuditEvent))  # built once: it runs on every request
# A row's columns, in the order of INSERT_EVENT_SQL's parameters.
AUDIT_COLUMNS = (
    "id",
    "at",
    "token_id",
    "role",
    "action",
    "resource_type",
    "resource_id",
    "patient_id",
    "outcome",
    "status",
    "request_id",
    "client_id",
    "device_id",
)
# The row by itself on the plain asyncpg pool: a read's commits by itself. (The recording
# pipeline writes its requests' rows with their work: app/recording/statements.py.)
_PLACES = ", ".join(f"${i}" for i in range(1, len(AUDIT_COLUMNS) + 1))
INSERT_EVENT_SQL = f"INSERT INTO audit_events ({', '.join(AUDIT_COLUMNS)}) VALUES ({_PLACES})"  # noqa: S608


def audit_event(record: AccessRecord, status: int) -> dict[str, object]:
    """The row's values: a plain Core INSERT, no unit-of-work flush on every request."""
    principal = record.principal
    return dict(
        id=new_id(),
        at=utcnow(),
        token_id=principal.token_id if principal else None,
        role=principal.role if principal else None,
        action=record.rule.action,
        resource_type=record.rule.resource,
        resource_id=record.resource_id,
        patient_id=record.patient_id,
        outcome=record.outcome,
        status=status,
        request_id=record.request_id,
        client_id=principal.client_id if principal else None,
        device_id=principal.device_id if principal else None,
    )


def audit_values(record: AccessRecord, status: int) -> tuple[object, ...]:
    """The row's values in the order of AUDIT_COLUMNS: the parameters of a raw statement."""
    event = audit_event(record, status)
    return tuple(event[name] for name in AUDIT_COLUMNS)


def audit_request(request: Request, record: AccessRecord) -> None:
    """Exactly one audit row for this request, whatever its outcome.

    Success: in the request's own transaction (the write and its row commit together); a
    read's, which has no transaction of its own, on the plain pool when there is one.
    Error, or an answer prepared before the handler (an idempotent replay): in a transaction
    of its own, after the request's was rolled back. When that row cannot be written either,
    the answer becomes a 503: nothing is served unaudited (app/core/errors.py, ``on_error``).
    """
    if not record.rule.audit:
        return
    reading = request.method in ("GET", "HEAD")
    state = app_state(request)
    pool = state.raw_pool if reading else None

    async def on_success(session: AsyncSession, status: int) -> None:
        if record.written:
            return
        if pool is None:
            await session.execute(_INSERT_EVENT, audit_event(record, status))
            return
        async with pg.connection(pool) as conn:
            await conn.execute(INSERT_EVENT_SQL, *audit_values(record, status))

    async def on_failure(status: int) -> None:
        if record.written:  # the write and its row committed before the request failed
            return
        try:
            async with state.sessionmaker() as session, session.begin():
                await session.execute(_INSERT_EVENT, audit_event(record, status))
        except Exception as exc:
            # Ids and types only: the driver's message may quote the row's values.
            log.error(
                "audit row not written: %s %s answered %d (request %s): %s",
                request.method,
                record.rule.resource,
                status,
                record.request_id,
                type(exc).__name__,
            )
            # The request fails closed: a 503, the database's own when it is down.
            raise unavailable(exc) or AuditUnavailable(
                "The request could not be recorded in the audit trail; retry later."
            ) from exc

    before_commit(request, on_success)
    on_error(request, on_failure)


def audit_subject(request: Request, *, resource_id: uuid.UUID, patient_id: uuid.UUID) -> None:
    """Name what a create made, when the path could not (POST /patients has no id in it)."""
    record: AccessRecord | None = getattr(request.state, "access", None)
    if record is not None:
        record.resource_id = str(resource_id)
        record.patient_id = patient_id


def audit_resource(request: Request, resource_id: uuid.UUID) -> None:
    """Name what a create made that is not about a patient (a registered client)."""
    record: AccessRecord | None = getattr(request.state, "access", None)
    if record is not None:
        record.resource_id = str(resource_id)


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(
        self,
        *,
        patient_id: uuid.UUID | None,
        since: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[AuditEvent], str | None]:
        stmt = select(AuditEvent)
        if patient_id is not None:
            stmt = stmt.where(AuditEvent.patient_id == patient_id)
        if since is not None:
            stmt = stmt.where(AuditEvent.at >= since)
        return await paginate(self.session, stmt, [AuditEvent.at, AuditEvent.id], limit, cursor)
