"""Keyset (cursor) pagination: stable ordering, no duplicates or gaps under concurrent inserts."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.errors import Unprocessable

T = TypeVar("T")
Row = TypeVar("Row")

MAX_LIMIT = 500
DEFAULT_LIMIT = 50

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Page size (1–{MAX_LIMIT}).")]
Cursor = Annotated[
    str | None,
    Query(max_length=512, description="Opaque cursor from the previous page's `next_cursor`."),
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _decode_value(raw: Any, python_type: type) -> Any:
    if python_type is datetime:
        return datetime.fromisoformat(raw)
    if python_type is date:
        return date.fromisoformat(raw)
    if python_type is uuid.UUID:
        return uuid.UUID(raw)
    if python_type is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if python_type is str and isinstance(raw, str):
        return raw
    if python_type is float and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    raise ValueError("unexpected cursor value")


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps([_encode_value(v) for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, columns: Sequence[InstrumentedAttribute[Any]]) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(raw, list) or len(raw) != len(columns):
            raise ValueError("wrong shape")
        return [
            _decode_value(value, column.type.python_type)
            for value, column in zip(raw, columns, strict=True)
        ]
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise Unprocessable.at(
            ["query", "cursor"], "invalid cursor: use the next_cursor of a previous page"
        ) from exc


async def paginate(
    session: AsyncSession,
    stmt: Select[Row],
    order_by: Sequence[InstrumentedAttribute[Any]],
    limit: int,
    cursor: str | None,
) -> tuple[list[Row], str | None]:
    """One page of ``stmt`` in ascending ``order_by`` order (whose last column must be unique)."""
    if cursor is not None:
        after = decode_cursor(cursor, order_by)
        stmt = stmt.where(tuple_(*order_by) > tuple_(*after))
    rows = list((await session.scalars(stmt.order_by(*order_by).limit(limit + 1))).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, encode_cursor([getattr(last, column.key) for column in order_by])
