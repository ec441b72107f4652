"""Keyset (cursor) pagination: stable ordering, no duplicates or gaps under concurrent inserts."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")
Row = TypeVar("Row")

MAX_LIMIT = 500
DEFAULT_LIMIT = 50

# A page ends at a row's (moment, id): every list is ordered by a UTC timestamp and then the
# row's UUID. A cursor spells that position as `<microseconds since 1970, UTC>.<32 hex digits>`,
# so every string of that shape is a position, one a client may keep or build: the next page
# is the rows after it (none, past the last). What a cursor is, the pattern says completely.
KEY_PATTERN = r"-?[0-9]{1,18}\.[0-9a-fA-F]{32}"
CURSOR_PATTERN = f"^{KEY_PATTERN}$"
_KEY = re.compile(r"(-?[0-9]{1,18})\.([0-9a-fA-F]{32})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Positions before the first or after the last moment Python can hold order like them.
_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Page size (1–{MAX_LIMIT}).")]
Cursor = Annotated[
    str | None,
    Query(
        pattern=CURSOR_PATTERN,
        description="The previous page's `next_cursor` (opaque to clients: pass it back as given).",
    ),
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_key(moment: datetime, row_id: uuid.UUID) -> str:
    """``moment`` (aware) and ``row_id`` as a cursor's key."""
    if moment.tzinfo is None:
        raise ValueError("a cursor's moment is an aware timestamp")
    delta = moment - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}.{row_id.hex}"


def decode_key(text: str) -> tuple[datetime, uuid.UUID]:
    """The position a key names; any string of KEY_PATTERN's shape names one (ValueError for
    anything else)."""
    match = _KEY.fullmatch(text)
    if match is None:
        raise ValueError("not a cursor key")
    micros = int(match.group(1))
    try:
        moment = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:  # beyond what a datetime holds: before every row, or after
        moment = _FIRST if micros < 0 else _LAST
    return moment, uuid.UUID(hex=match.group(2))


def encode_cursor(values: Sequence[Any]) -> str:
    moment, row_id = values
    return encode_key(moment, row_id)


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    # The route's Query declaration has refused anything else with a 422.
    return decode_key(cursor)


def _check_order(columns: Sequence[InstrumentedAttribute[Any]]) -> None:
    types = [column.type.python_type for column in columns]
    if types != [datetime, uuid.UUID]:
        raise TypeError(f"keyset pages are ordered by (a UTC timestamp, a UUID), not {types}")


async def paginate(
    session: AsyncSession,
    stmt: Select[Row],
    order_by: Sequence[InstrumentedAttribute[Any]],
    limit: int,
    cursor: str | None,
) -> tuple[list[Row], str | None]:
    """One page of ``stmt`` in ascending ``order_by`` order: a UTC timestamp column, then the
    row's UUID (unique)."""
    _check_order(order_by)
    if cursor is not None:
        after = decode_cursor(cursor)
        stmt = stmt.where(tuple_(*order_by) > tuple_(*after))
    rows = list((await session.scalars(stmt.order_by(*order_by).limit(limit + 1))).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, encode_cursor([getattr(last, column.key) for column in order_by])
