"""Constant statements for storing and looking up many observations at once (batch upload).

Each statement is built once per process and holds no values, only parameters, so it is the
same object whatever the batch size: SQLAlchemy compiles it once (its compiled cache) and
asyncpg prepares it once per connection. A multi-row ``INSERT … VALUES (…), (…)`` instead is
a new statement for every batch, built and compiled on every request (1,100 bound values for
100 rows), which cost most of a batch request's CPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Insert,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from app.core.db import table_of
from app.courses.models import Course
from app.observations.models import Observation
from app.patients.models import Patient
from app.treatment_sessions.models import TreatmentSession

# The foreign-key columns take their type from the tables they name, so those are loaded.
_REFERENCED = (Patient, Course, TreatmentSession)

TABLE = table_of(Observation)
COLUMNS: tuple[str, ...] = tuple(column.key for column in TABLE.columns)
# A batch is one patient's, received at one moment: those two are bound once per statement.
BATCH_COLUMNS = ("patient_id", "received_at")
# The columns each item brings, in table order: an item given to ``insert_*`` has each of them.
ITEM_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in BATCH_COLUMNS)


def unnest_columns(items: Sequence[Mapping[str, Any]]) -> dict[str, list[Any] | None]:
    """The arguments of an unnest INSERT (``insert_unnest``, also inside the recording
    pipeline's PG_RECORD_BATCH): one array per name of ``ITEM_COLUMNS``, in that order.

    Items go in id order, so two batches sharing ids in different orders lock them in the same
    order and wait for each other instead of deadlocking. A column NULL in every item (often
    context, note…) goes as one NULL (unnest() pads it).
    """
    ordered = sorted(items, key=lambda item: item["id"].int)
    columns: dict[str, list[Any] | None] = {}
    for name in ITEM_COLUMNS:
        column = [item[name] for item in ordered]
        columns[name] = None if all(value is None for value in column) else column
    return columns


def _array(name: str) -> BindParameter[Any]:
    """The column ``name`` of every item, as one array parameter of the column's type (its
    elements converted as a single row's value would be, e.g. by UTCDateTime).

    The PostgreSQL drivers the service uses (asyncpg, psycopg) render the parameter with its
    type, ``$1::UUID[]``: PostgreSQL needs it to know what unnest() returns.
    """
    return bindparam(name, type_=postgresql.ARRAY(TABLE.c[name].type))


@cache
def insert_unnest() -> Insert:
    """PostgreSQL: every item in one statement, each column bound as one array::

        INSERT INTO observations (id, patient_id, instrument, …, received_at, …)
        SELECT items.id, :patient_id, items.instrument, …, :received_at, …
        FROM unnest(:id::UUID[], :instrument::VARCHAR(40)[], …) AS items(id, instrument, …)
        ON CONFLICT (id) DO NOTHING RETURNING observations.id

    Parameters: ``patient_id`` and ``received_at``, and one list per name of
    ``ITEM_COLUMNS``, all of one length (None for a NULL element). unnest() pads a shorter
    array with NULLs, so a column that is NULL in every item may be bound as None instead;
    ``id`` never is, and decides the number of rows.
    """
    items = (
        func.unnest(*(_array(name) for name in ITEM_COLUMNS))
        .table_valued(*ITEM_COLUMNS)
        .render_derived(name="items")
    )
    values: dict[str, ColumnElement[Any]] = {
        name: bindparam(name, type_=TABLE.c[name].type) for name in BATCH_COLUMNS
    }
    values |= {name: items.c[name] for name in ITEM_COLUMNS}
    return (
        postgresql.insert(TABLE)
        .from_select(list(COLUMNS), select(*(values[name] for name in COLUMNS)))
        .on_conflict_do_nothing(index_elements=[TABLE.c.id])
        .returning(TABLE.c.id)
    )


@cache
def insert_row() -> Insert:
    """SQLite: one row's INSERT (every column), for executemany with a list of rows
    (SQLAlchemy sends them as a few multi-row statements); RETURNING names the ids stored."""
    return (
        sqlite.insert(TABLE)
        .on_conflict_do_nothing(index_elements=[TABLE.c.id])
        .returning(TABLE.c.id)
    )
