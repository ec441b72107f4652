"""What FastAPI's dependency machinery costs a request, in one process, without the service.

    python -m bench.dependencies

Three apps with the same GET route, called through ASGI directly (no server, no client, no
database): without dependencies; with the service's shape (two router dependencies and a
service dependency, each taking a per-request session from a ``yield`` dependency with
``scope="function"``, as app/core/db.py's ``SessionDep``); and with the same work in two plain
dependencies. Prints the CPU time per request of each, three rounds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from starlette.types import Message


async def _session(request: Request, response: Response) -> AsyncIterator[object]:
    yield object()


Session = Annotated[object, Depends(_session, scope="function")]


async def _authorize(request: Request, session: Session) -> None:
    return None


async def _idempotency(request: Request, session: Session) -> None:
    return None


async def _service(request: Request, session: Session) -> object:
    return session


async def _plain_service(request: Request) -> object:
    return object()


def _app(router_dependencies: list[Any], service: Any) -> FastAPI:
    """The route, behind ``router_dependencies``, with ``service`` as its service dependency
    (None: a bare route, neither)."""
    router = APIRouter(prefix="/api", dependencies=router_dependencies)
    if service is None:

        @router.get("/patients/{patient_id}/trends")
        async def bare(patient_id: uuid.UUID) -> dict[str, int]:
            return {"n": 1}

    else:

        @router.get("/patients/{patient_id}/trends")
        async def trends(
            patient_id: uuid.UUID,
            svc: Annotated[object, Depends(service)],
            course_id: uuid.UUID | None = None,
        ) -> dict[str, int]:
            return {"n": 1}

    app = FastAPI()
    app.include_router(router)
    return app


async def _cpu_us(app: FastAPI, count: int) -> float:
    path = f"/api/patients/{uuid.uuid4()}/trends"
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
    }  # fmt: skip

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    for _ in range(500):
        await app(dict(scope), receive, send)
    started = time.process_time()
    for _ in range(count):
        await app(dict(scope), receive, send)
    return (time.process_time() - started) / count * 1e6


async def _main(count: int = 20_000) -> None:
    shapes = {
        "no dependencies": _app([], None),
        "the service's shape": _app([Depends(_authorize), Depends(_idempotency)], _service),
        "two plain dependencies": _app([Depends(_plain_service)], _plain_service),
    }
    for _ in range(3):
        figures = [f"{name} {await _cpu_us(app, count):.0f} µs" for name, app in shapes.items()]
        print("CPU per request: " + ", ".join(figures), flush=True)


if __name__ == "__main__":
    asyncio.run(_main())
