"""The ``outcomes`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sqlite3
import sys
import tempfile
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime

from alembic.util.exc import CommandError as AlembicError
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

import app.models  # noqa: F401  (every table: a token's foreign keys name clients and devices)
from app.auth.models import ROLES
from app.auth.schemas import TokenCreate
from app.auth.service import IssuedToken, TokenService
from app.core.config import Settings, get_settings, to_async_url
from app.core.db import create_engine, create_sessionmaker
from app.core.errors import AppError, validation_errors
from app.core.migrations import SchemaState, schema_state, upgrade
from app.credentials.purge import Purged, purge_dead_credentials

log = logging.getLogger("outcomes")


class CommandFailed(Exception):
    """A command cannot go on; its message is the one line it prints (never a traceback)."""


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _where(database_url: str) -> str:
    """The database, for a message: no user name, no password."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database}"
    host = f"{url.host or 'localhost'}{f':{url.port}' if url.port else ''}"
    return f"PostgreSQL database {url.database} on {host}"


def _reason(exc: BaseException) -> str:
    """What went wrong, in a line: the driver's own words for a connection that failed (they
    name the host or the database, never data), else the kind of error."""
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    if isinstance(exc, SQLAlchemyError) and not isinstance(exc, DBAPIError):
        return type(exc).__name__
    first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return first_line or type(cause).__name__


def _database_failure(database_url: str, exc: BaseException) -> CommandFailed:
    return CommandFailed(f"cannot use the {_where(database_url)}: {_reason(exc)}")


def _open_sqlite(database_url: str) -> None:
    """Open the SQLite file with the standard library first: aiosqlite, when it cannot open a
    file, answers from its worker thread after asyncio.run has closed the loop, and that
    thread prints a traceback of its own."""
    path = make_url(database_url).database
    if path and path != ":memory:":
        try:
            sqlite3.connect(path).close()
        except sqlite3.Error as exc:
            raise CommandFailed(f"cannot use the {_where(database_url)}: {exc}") from exc


def _schema_state(database_url: str) -> SchemaState:
    if _is_sqlite(database_url):
        _open_sqlite(database_url)

    async def read() -> SchemaState:
        engine = create_engine(Settings(database_url=database_url))
        try:
            return await schema_state(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(read())
    except (SQLAlchemyError, OSError) as exc:
        raise _database_failure(database_url, exc) from exc


def _require_latest_schema(database_url: str) -> None:
    state = _schema_state(database_url)
    if not state.at_head:
        raise CommandFailed(state.describe())


def _migrate(database_url: str) -> None:
    """Upgrade to this version's latest schema; a database this version cannot migrate (out
    of reach, or migrated by a newer version) is one line, before Alembic starts."""
    state = _schema_state(database_url)
    if state.from_newer_version:
        raise CommandFailed(state.describe())
    upgrade(database_url)


def cmd_migrate(_args: argparse.Namespace) -> int:
    settings = get_settings()
    _migrate(settings.database_url)
    backend = make_url(settings.database_url).get_backend_name()
    print(f"database migrated to the latest schema ({backend})")
    return 0


async def _issue_token(
    database_url: str, role: str, patient_id: uuid.UUID | None, expires_in_days: float | None
) -> IssuedToken:
    engine = create_engine(Settings(database_url=database_url))
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            return await TokenService(session).issue(role, patient_id, expires_in_days)
    finally:
        await engine.dispose()


async def _has_admin(database_url: str) -> bool:
    engine = create_engine(Settings(database_url=database_url))
    try:
        async with create_sessionmaker(engine)() as session:
            return await TokenService(session).any_admin()
    finally:
        await engine.dispose()


def cmd_tokens_create(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:  # the same rules as POST /api/v1/tokens
        request = TokenCreate(
            role=args.role, patient_id=args.patient, expires_in_days=args.expires_in
        )
    except ValidationError as exc:
        for error in validation_errors(exc.errors(include_input=False)):
            print(f"outcomes tokens create: {error['msg']}", file=sys.stderr)
        return 2
    if _is_sqlite(settings.database_url):
        _migrate(settings.database_url)  # the embedded default may not exist yet
    _require_latest_schema(settings.database_url)
    try:
        issued = asyncio.run(
            _issue_token(
                settings.database_url, request.role, request.patient_id, request.expires_in_days
            )
        )
    except AppError as exc:
        print(f"outcomes tokens create: {exc.detail}", file=sys.stderr)
        return 2
    row = issued.row
    expiry = row.expires_at.isoformat() if row.expires_at else "never"
    bound = f", patient {row.patient_id}" if row.patient_id else ""
    print(f"token {row.id}: role {row.role}{bound}, expires {expiry}")
    print("Store it now: only its hash is kept, it cannot be shown again.")
    print(issued.token)  # alone on the last line, for scripts
    return 0


async def _purge_credentials(settings: Settings) -> Purged:
    engine = create_engine(settings)
    try:
        return await purge_dead_credentials(create_sessionmaker(engine), settings)
    finally:
        await engine.dispose()


def cmd_tokens_purge(_args: argparse.Namespace) -> int:
    settings = get_settings()
    _require_latest_schema(settings.database_url)
    purged = asyncio.run(_purge_credentials(settings))
    print(
        f"purged {purged}; dead for more than {settings.credential_retention_hours:g} hours "
        "(OUTCOMES_CREDENTIAL_RETENTION_HOURS)"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    sqlite = _is_sqlite(settings.database_url)
    # The embedded default migrates itself so one command runs the service; a PostgreSQL
    # deployment migrates as a separate step (`outcomes migrate`) unless asked here.
    migrate = args.migrate or (sqlite and not args.no_migrate)
    if migrate:
        _migrate(settings.database_url)
    # Never serve a schema this version was not written for: every request would fail.
    state = _schema_state(settings.database_url)
    if not state.at_head:
        raise CommandFailed(
            state.describe("run `outcomes migrate` first (or serve with `--migrate`)")
        )
    if migrate and not asyncio.run(_has_admin(settings.database_url)):
        # Never a default secret: the operator makes the first admin token.
        print(
            "No admin token exists yet. Create one with:\n"
            "  outcomes tokens create --role admin\n"
            "(every /api request needs `Authorization: Bearer <token>`)",
            flush=True,
        )
    if sqlite and args.workers > 1:
        log.warning("SQLite serialises writers: more than one worker adds no write throughput")
    if args.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # /metrics answers from one worker; shared files let it report all of them.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="outcomes-metrics-")
    print(
        f"Outcomes API on http://{args.host}:{args.port} (docs at /docs, dashboard at /dashboard)",
        flush=True,
    )
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level,
        # uvicorn's access log prints query strings, which can carry PHI (external_id=...);
        # the app logs method, route template, status and duration instead.
        access_log=False,
        proxy_headers=True,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    # Imported here: the demo builds the whole app, which migrate and serve do not need.
    from app.demo import DemoError, run_demo

    today: date = args.today or datetime.now(UTC).date()
    settings = get_settings()
    _migrate(settings.database_url)  # run_demo migrates too: this says why it cannot, in a line
    try:
        return run_demo(settings, patients=args.patients, seed=args.seed, today=today)
    except DemoError as exc:
        print(f"demo stopped: {exc}", file=sys.stderr)
        return 1


def _patient_count(raw: str) -> int:
    from app.demo import MAX_PATIENTS

    try:
        count = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if not 1 <= count <= MAX_PATIENTS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_PATIENTS}")
    return count


def _past_day(raw: str) -> date:
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {raw!r}") from None
    # The API refuses timestamps in the future, and the demo dates everything before this day.
    if day > datetime.now(UTC).date():
        raise argparse.ArgumentTypeError("must not be in the future")
    return day


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="outcomes", description="Outcomes API service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API (migrates the embedded SQLite first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    group = serve.add_mutually_exclusive_group()
    group.add_argument("--migrate", action="store_true", help="migrate any database before serving")
    group.add_argument("--no-migrate", action="store_true", help="never migrate before serving")
    serve.set_defaults(func=cmd_serve)

    tokens = sub.add_parser("tokens", help="manage API tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tokens_sub.add_parser(
        "create", help="issue a token; it is printed once, alone on the last line"
    )
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--patient", type=uuid.UUID, help="the patient a patient token is bound to")
    create.add_argument("--expires-in", type=float, metavar="DAYS", help="default: no expiry")
    create.set_defaults(func=cmd_tokens_create)
    purge = tokens_sub.add_parser(
        "purge",
        help="delete dead credentials now (the service does it every hour too)",
        description="Delete access tokens, enrolment codes and refresh tokens dead (expired, "
        "revoked, burned) for more than OUTCOMES_CREDENTIAL_RETENTION_HOURS, spent assertion "
        "ids and old failure counts; the audit trail is kept.",
    )
    purge.set_defaults(func=cmd_tokens_purge)

    migrate = sub.add_parser("migrate", help="upgrade the database to the latest schema")
    migrate.set_defaults(func=cmd_migrate)

    demo = sub.add_parser(
        "demo",
        help="load a realistic synthetic cohort through the API (migrates first)",
        description="Load a synthetic cohort (DEMO-0001, ...) through the API. Does nothing "
        "if DEMO-0001 already exists. The same --seed and --today give the same data.",
    )
    demo.add_argument("--patients", type=_patient_count, default=60, help="default: 60")
    demo.add_argument("--seed", type=int, default=42, help="default: 42")
    demo.add_argument(
        "--today",
        type=_past_day,
        default=None,
        metavar="YYYY-MM-DD",
        help="the day the cohort is dated back from (default: today in UTC)",
    )
    demo.set_defaults(func=cmd_demo)
    return parser


SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def _unsupported_url(database_url: str) -> str | None:
    """Why OUTCOMES_DATABASE_URL cannot name a database of this service (None: it can). The
    value itself is never echoed: it may hold a password."""
    usage = "sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DB"
    try:
        backend = to_async_url(database_url).get_backend_name()
    except ArgumentError:
        return f"OUTCOMES_DATABASE_URL is not a database URL ({usage})"
    if backend not in SUPPORTED_BACKENDS:
        return f"OUTCOMES_DATABASE_URL names {backend}, which Outcomes does not run on ({usage})"
    return None


def _command_name(args: argparse.Namespace) -> str:
    sub = getattr(args, "tokens_command", None)
    return f"outcomes {args.command}{f' {sub}' if sub else ''}"


def main(argv: Sequence[str] | None = None) -> int:
    level = get_settings().log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    if (problem := _unsupported_url(get_settings().database_url)) is not None:
        print(f"{_command_name(args)}: {problem}", file=sys.stderr)
        return 1
    # A database that cannot be used is an operator's problem with one cause: one line that
    # names it, and a non-zero exit; never a traceback.
    try:
        result: int = args.func(args)
    except CommandFailed as exc:
        print(f"{_command_name(args)}: {exc}", file=sys.stderr)
        return 1
    except (SQLAlchemyError, OSError) as exc:
        failure = _database_failure(get_settings().database_url, exc)
        print(f"{_command_name(args)}: {failure}", file=sys.stderr)
        return 1
    except AlembicError as exc:  # e.g. a database migrated by a newer version
        print(f"{_command_name(args)}: cannot migrate the database: {exc}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
