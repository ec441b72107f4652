"""Work a process repeats while the app runs (purging what has expired): one loop for all of
it, started and stopped by the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress


@asynccontextmanager
async def repeating(
    name: str, every_seconds: float, job: Callable[[], Awaitable[None]], log: logging.Logger
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``job`` now, then every ``every_seconds``, until the block ends (then it is
    cancelled, and waited for).

    A run that fails is logged by the kind of its error (never its message, which could quote
    data) and the next one runs all the same: a database that is down for a while must not
    stop the work for good. Every worker process runs its own loop: the jobs are idempotent
    DELETEs, so several at once only cost a little duplicated work.
    """

    async def forever() -> None:
        while True:
            try:
                await job()
            except Exception as exc:
                log.warning("%s failed: %s", name, type(exc).__name__)
            await asyncio.sleep(every_seconds)

    task = asyncio.create_task(forever(), name=name)
    try:
        yield task
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
