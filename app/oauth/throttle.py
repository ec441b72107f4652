"""The token endpoint's bound on guessing, per caller: a client address whose token requests
keep being refused is refused outright for a while (429, `slow_down`, with Retry-After).

Each code also bounds the guesses at itself (5, app/enrolment), but a guesser could spread
its tries over many codes' public parts; this bounds all of one address's tries, whatever the
grant. A refused request is counted (a wrong code, a dead refresh token, a bad assertion, a
malformed request); a successful one is not, and does not wipe the count either, or a guesser
holding one valid refresh token could reset its count between guesses.

Counted in the database (`oauth_failures`: a row per address and window of time), so the
bound holds across every worker and machine, at the cost of one indexed read per token
request and one upsert per refusal, committed with the request's audit row. Requests racing
each other may pass the check together before any is counted: the bound can be overshot by
the number of requests one address has in flight at once.

The window is fixed (`window_seconds`, aligned to the epoch), and an address is refused
while its failures in the current and the previous window reach `limit`: so no span of one
window's length ever holds more than `limit` counted failures (a plain fixed window would
allow twice that across a boundary).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.oauth.models import TokenEndpointFailure

MAX_CALLER = 100  # the column's width; an address is at most 45 characters (IPv6)


class FailureThrottle:
    def __init__(self, session: AsyncSession, *, limit: int, window_seconds: int) -> None:
        self.session = session
        self.limit = limit
        self.window = timedelta(seconds=window_seconds)
        self.window_seconds = window_seconds

    def _windows(self, now: datetime) -> tuple[datetime, datetime]:
        """(the current window's start, the previous one's)."""
        epoch = int(now.timestamp())
        start = datetime.fromtimestamp(epoch - epoch % self.window_seconds, UTC)
        return start, start - self.window

    async def retry_after(self, caller: str, reader: AsyncSession | None = None) -> int:
        """0 when ``caller`` may try; else the whole seconds until it may. Read on ``reader``
        when given (a session outside the request's transaction)."""
        now = utcnow()
        current, previous = self._windows(now)
        rows = await (reader or self.session).execute(
            select(TokenEndpointFailure.window_start, TokenEndpointFailure.failures).where(
                TokenEndpointFailure.caller == caller[:MAX_CALLER],
                TokenEndpointFailure.window_start >= previous,
            )
        )
        counts: dict[datetime, int] = {start: failures for start, failures in rows.all()}
        in_current, in_previous = counts.get(current, 0), counts.get(previous, 0)
        if in_current + in_previous < self.limit:
            return 0
        # The previous window's failures stop counting when this window ends; if this one's
        # alone reach the limit, they stop counting when the next one ends.
        free_at = current + self.window * (1 if in_current < self.limit else 2)
        return max(1, math.ceil((free_at - now).total_seconds()))

    async def count_failure(self, caller: str) -> None:
        now = utcnow()
        current, _previous = self._windows(now)
        values = {"caller": caller[:MAX_CALLER], "window_start": current, "failures": 1}
        dialect = self.session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = insert(TokenEndpointFailure).values(values)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["caller", "window_start"],
                set_={"failures": TokenEndpointFailure.failures + 1},
            )
        )
        # Windows that no longer count, every caller's: the table stays as small as the
        # number of addresses failing now.
        await self.forget_old_windows(now)

    async def forget_old_windows(self, now: datetime) -> int:
        """Delete the counts of windows that no longer count (every caller's): how many.
        Failures do it as they come; the credentials purge does it when none come."""
        _current, previous = self._windows(now)
        result = await self.session.execute(
            delete(TokenEndpointFailure).where(TokenEndpointFailure.window_start < previous)
        )
        return cast(CursorResult[Any], result).rowcount
