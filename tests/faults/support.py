"""Helpers of the fault suite (tests/faults): a private PostgreSQL cluster, real ``outcomes``
processes, and the record of a load, one entry per request, for the figures each test prints.

Every process a helper starts is stopped by the same helper (context managers), and every
request goes to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Executable, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.audit.models import AuditEvent
from app.auth.service import TokenService
from app.core.config import to_async_url
from app.core.db import create_sessionmaker
from app.observations.models import Observation
from bench.server import free_port, source_env
from tests.factories import API


def _pg_bin() -> Path:
    """The PostgreSQL programs the private cluster runs: OUTCOMES_TEST_PG_BIN, else the
    machine's newest Debian PostgreSQL (15 today)."""
    if chosen := os.environ.get("OUTCOMES_TEST_PG_BIN"):
        return Path(chosen)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()


def as_postgres(argv: Sequence[str]) -> list[str]:
    """``initdb`` and ``postgres`` refuse to run as root: as root, run them as the ``postgres``
    OS user; as anyone else, as that user."""
    if os.geteuid() != 0:
        return list(argv)
    return ["runuser", "-u", "postgres", "--", *argv]


@dataclass(frozen=True, slots=True)
class Cluster:
    """A PostgreSQL cluster of the test's own, in a temporary folder, on a free port."""

    folder: Path
    port: int

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    def url(self, role: str = "postgres", database: str = "outcomes") -> str:
        return f"postgresql://{role}@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str) -> None:
        argv = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), *args]
        subprocess.run(as_postgres(argv), check=True, capture_output=True, timeout=60)  # noqa: S603

    def start(self) -> None:
        """Start it and wait (30 s at most) until it accepts connections."""
        self._pg_ctl("-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop it (``fast``: clients are disconnected, open transactions roll back) and wait
        until it is down."""
        self._pg_ctl("-w", "-t", "30", "-m", mode, "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@contextmanager
def private_cluster() -> Iterator[Cluster]:
    """``initdb`` in a new temporary folder, started on a free loopback port with an empty
    ``outcomes`` database; stopped and removed when the block ends.

    The folder is made with ``tempfile`` (under /tmp), not pytest's ``tmp_path``: pytest's
    folders are private to the user running the tests, and the cluster runs as ``postgres``.
    """
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"no PostgreSQL programs in {PG_BIN} (set OUTCOMES_TEST_PG_BIN)")
    folder = Path(tempfile.mkdtemp(prefix="outcomes-pg-"))
    cluster = Cluster(folder, free_port())
    try:
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        initdb = [str(PG_BIN / "initdb"), "-D", str(cluster.data), "-U", "postgres"]
        initdb += ["-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
        subprocess.run(as_postgres(initdb), check=True, capture_output=True, timeout=120)  # noqa: S603
        with (cluster.data / "postgresql.conf").open("a") as conf:
            # Loopback only; its socket in its own folder; a small footprint (shared machine).
            conf.write(
                f"port = {cluster.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{folder}'\n"
                "shared_buffers = 32MB\n"
                "max_connections = 120\n"
            )
        cluster.start()
        createdb = [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(cluster.port)]
        subprocess.run([*createdb, "-U", "postgres", "outcomes"], check=True, timeout=60)  # noqa: S603
        yield cluster
    finally:
        if cluster.running():
            cluster.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


def cli_token(database_url: str, role: str) -> str:
    """A real token, made the way an operator makes one: ``outcomes tokens create``."""
    done = subprocess.run(  # noqa: S603 (our own interpreter and arguments)
        [sys.executable, "-m", "app.cli", "tokens", "create", "--role", role],
        env=source_env(os.environ | {"OUTCOMES_DATABASE_URL": database_url}),
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip().splitlines()[-1]  # the token is alone on the last line


async def issued_tokens(database_url: str, *roles: str) -> list[str]:
    """A token per role, issued in this process (quicker than ``cli_token``'s process each,
    for tests about something else)."""
    engine = create_async_engine(to_async_url(database_url), poolclass=NullPool)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            service = TokenService(session)
            return [(await service.issue(role, None, None)).token for role in roles]
    finally:
        await engine.dispose()


def api_client(base: str, token: str, timeout: float = 10) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
    )


def _expect(response: httpx.Response, status: int) -> None:
    """A set-up step worked. Not an assertion: a test marked xfail (``raises=AssertionError``)
    for a known bug must still fail when its set-up breaks."""
    if response.status_code != status:
        raise RuntimeError(f"set-up: {response.request.url.path} answered {response.status_code}")


@dataclass(frozen=True, slots=True)
class Patient:
    id: str
    course_id: str
    name: str
    external_id: str


async def seed_patient(api: httpx.AsyncClient, name: str | None = None) -> Patient:
    """A patient with an active course that started two weeks ago (so observations of the
    last 13 days belong to it)."""
    external_id = f"FAULT-{uuid.uuid4().hex[:12]}"
    name = name or f"Fault Patient {external_id[-6:]}"
    body = {"name": name, "external_id": external_id, "birth_date": "1961-04-17"}
    created = await api.post(f"{API}/patients", json=body)
    _expect(created, 201)
    patient_id: str = created.json()["id"]
    course = {
        "indication": "lumbar muscle contracture",
        "region": "lumbar",
        "technique": "paravertebral",
        "start_date": (datetime.now(UTC) - timedelta(days=14)).date().isoformat(),
    }
    opened = await api.post(f"{API}/patients/{patient_id}/courses", json=course)
    _expect(opened, 201)
    return Patient(patient_id, opened.json()["id"], name, external_id)


def observation_body(serial: int, now: datetime) -> dict[str, Any]:
    """A new pain score with a client id (as an offline app sends it): a distinct moment in
    the last 13 days, so every body is different from every other."""
    return {
        "id": str(uuid.uuid4()),
        "instrument": "pain-nrs",
        "value": serial % 11,
        "recorded_at": (now - timedelta(days=1, seconds=37 * serial)).isoformat(),
        "context": "rest",
        "source": "patient",
    }


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request of a load and what came back."""

    kind: str  # "write" or "read"
    started: float  # time.monotonic() when it was sent
    ended: float  # ... when its answer (or its failure) came
    status: int | None  # None: no HTTP answer at all (refused, reset, timed out)
    error: str | None = None  # the transport error's type, when there was no answer
    retry_after: str | None = None
    content_type: str = ""
    request_id: str | None = None  # X-Request-ID: ties the answer to its audit row
    body: Any = None  # the JSON answer of a success or an error

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable_problem(self) -> bool:
        """A 503 as the contract says: problem+json with Retry-After."""
        return (
            self.status == 503
            and self.retry_after is not None
            and self.content_type.startswith("application/problem+json")
            and isinstance(self.body, dict)
            and self.body.get("status") == 503
        )

    def describe(self, origin: float) -> str:
        """E.g. "read at +4.21 s: HTTP 500 text/plain" (``origin``: when the load began)."""
        answer = f"HTTP {self.status} {self.content_type}" if self.status else self.error
        return f"{self.kind} at +{self.started - origin:.2f} s: {answer}"


async def send(
    client: httpx.AsyncClient, kind: str, method: str, url: str, **kwargs: Any
) -> Attempt:
    """Send one request; a transport failure (refused, reset, timeout) is recorded, not
    raised."""
    started = time.monotonic()
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        return Attempt(kind, started, time.monotonic(), None, error=type(exc).__name__)
    content_type = response.headers.get("content-type", "")
    try:
        body = response.json() if "json" in content_type else response.text
    except ValueError:
        body = response.text
    return Attempt(
        kind,
        started,
        time.monotonic(),
        response.status_code,
        retry_after=response.headers.get("retry-after"),
        content_type=content_type,
        request_id=response.headers.get("x-request-id"),
        body=body,
    )


async def fetch_all(database_url: str, statement: Executable) -> list[tuple[Any, ...]]:
    """The rows of one statement, on a connection of its own (closed at once): the column
    types convert ids and timestamps alike on both databases."""
    engine = create_async_engine(to_async_url(database_url), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in (await conn.execute(statement)).all()]
    finally:
        await engine.dispose()


async def stored_observations(
    database_url: str, patient_ids: Sequence[str]
) -> list[tuple[str, float, datetime]]:
    """(id, value, recorded_at) of every observation these patients have."""
    columns = (Observation.id, Observation.value, Observation.recorded_at)
    ids = [uuid.UUID(p) for p in patient_ids]
    rows = await fetch_all(database_url, select(*columns).where(Observation.patient_id.in_(ids)))
    return [(str(row[0]), float(row[1]), row[2]) for row in rows]


async def audited_request_ids(database_url: str, request_ids: Sequence[str]) -> set[str]:
    """Which of these requests have a row in the audit trail."""
    found: set[str] = set()
    for i in range(0, len(request_ids), 500):
        part = list(request_ids[i : i + 500])
        stmt = select(AuditEvent.request_id).where(AuditEvent.request_id.in_(part))
        found |= {str(row[0]) for row in await fetch_all(database_url, stmt)}
    return found


def report(name: str, figures: dict[str, Any], folder: Path) -> Path:
    """Print a test's figures (``pytest -s`` shows them) and keep them as JSON in ``folder``."""
    path = folder / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"\n[faults] {name}: {json.dumps(figures, sort_keys=True)}\n[faults] figures: {path}")
    return path


async def execute(database_url: str, *statements: str) -> None:
    """Run statements (DDL, grants) in one transaction of their own."""
    engine = create_async_engine(to_async_url(database_url), poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


def pid_of_peer(local_port: int, candidates: Sequence[int]) -> int | None:
    """Which of ``candidates`` holds the TCP socket bound to 127.0.0.1:``local_port`` (the
    sending end of a connection a test's receiver accepted): its inode in /proc/net/tcp, then
    the process with a descriptor on that inode. None when none does (it exited)."""
    wanted = f"0100007F:{local_port:04X}"
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted:
            inode = fields[9]
            break
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in candidates:
        try:
            descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue  # it exited
        for fd in descriptors:
            with contextlib.suppress(OSError):  # closed in between
                if os.readlink(fd) == target:
                    return pid
    return None


# --- push (tests/faults/test_push_*.py) ------------------------------------------------------

PUSH_TIMEOUT = 2.0  # s: OUTCOMES_PUSH_TIMEOUT_SECONDS, so a lease is 2 × this + 5 s
LEASE = 2 * PUSH_TIMEOUT + 5
PUSH_ENV = {
    "OUTCOMES_PUSH_DISPATCH": "true",
    "OUTCOMES_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "OUTCOMES_PUSH_TIMEOUT_SECONDS": str(PUSH_TIMEOUT),
    "OUTCOMES_PUSH_RETRY_BASE_SECONDS": "0.2",
    "OUTCOMES_PUSH_RETRY_MAX_SECONDS": "1",
    "OUTCOMES_PUSH_POLL_SECONDS": "0.1",
}


async def add_webhook(base: str, admin_token: str, url: str, *events: str) -> dict[str, Any]:
    """A webhook to ``url`` for ``events`` (its secret included)."""
    async with api_client(base, admin_token) as admin:
        made = await admin.post(f"{API}/webhooks", json={"url": url, "events": list(events)})
    _expect(made, 201)
    hook: dict[str, Any] = made.json()
    return hook
