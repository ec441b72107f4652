"""Which exceptions mean the database cannot answer now (an outage the client may retry in a
moment) rather than a bug: the one rule every layer applies (app/core/errors.py answers them
with a 503 and ``Retry-After``).

Pure classification, no web code: the engine, the plain pool, the audit trail and the error
handlers all ask ``outage(exc)``.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

import asyncpg
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

Outage = Literal["query-timeout", "database-unavailable"]

QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout
# PostgreSQL SQLSTATEs of a database that is gone, going or full: class 08 (connection
# exception), 57P01-03 (shut down, crashed, starting up), 53300 (too many connections).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
# SQLite: another writer holds the lock past the busy timeout, or the file cannot be read.
_UNAVAILABLE_SQLITE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR")

# What the database layers raise, outages or not: SQLAlchemy's, the drivers', the socket's.
DRIVER_ERRORS: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    sqlite3.Error,
    OSError,
)


def outage(exc: BaseException) -> Outage | None:
    """The kind of outage ``exc`` reports, or None when it is not one (a bug, a constraint).

    Looks through the wrappers: SQLAlchemy's ``DBAPIError.orig`` and the driver's own cause.
    An ``OSError`` is the socket to the database (refused, reset, timed out, unresolvable):
    a request opens no other.
    """
    seen: BaseException | None = exc
    for _ in range(4):  # the exception, SQLAlchemy's orig, the driver's cause
        if seen is None:
            return None
        if isinstance(seen, PoolTimeout | OSError):
            return "database-unavailable"
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return "database-unavailable"
        sqlstate = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if sqlstate == QUERY_CANCELED:
            return "query-timeout"
        if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
            return "database-unavailable"
        if isinstance(seen, sqlite3.Error) and str(
            getattr(seen, "sqlite_errorname", "")
        ).startswith(_UNAVAILABLE_SQLITE):
            return "database-unavailable"
        seen = seen.orig if isinstance(seen, DBAPIError) else seen.__cause__
    return None
