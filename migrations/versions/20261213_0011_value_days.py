"""Bounded cost (issue 20): each day of a patient's values reduced as a long trend reads it
(``value_days``), and the days changed since (``value_days_stale``), marked by triggers on the
two tables values come from in the transaction of the change, on both databases.

A day's key is (patient, instrument, UTC day, course): the course the value belongs to, the
nil uuid for none. An observation changes its own day; a ``pain-nrs`` observation naming a
session changes the session's day too (the session's ``pain_before`` stops counting); a
session with a ``pain_before`` changes its course's ``pain-nrs`` day. Every day that already
holds values starts stale: the service computes them (``app.analytics.days``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-13 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_STALE = "INSERT INTO value_days_stale (patient_id, instrument, day, course_key)"


def _observation_days(rows: str, day: str, no_course: str, session_day: str) -> str:
    """The days the observations ``rows`` change (``day``: a timestamp's UTC day)."""
    return f"""
        SELECT o.patient_id, o.instrument, {day.format("o.recorded_at")},
               COALESCE(o.course_id, {no_course})
        FROM {rows} o
        UNION
        SELECT s.patient_id, 'pain-nrs', {session_day}, s.course_id
        FROM {rows} o JOIN treatment_sessions s ON s.id = o.session_id
        WHERE o.instrument = 'pain-nrs' AND s.pain_before IS NOT NULL"""


def _session_days(rows: str, day: str) -> str:
    return f"""
        SELECT s.patient_id, 'pain-nrs', {day.format("s.performed_at")}, s.course_id
        FROM {rows} s WHERE s.pain_before IS NOT NULL"""


_PG_DAY = "(({}) AT TIME ZONE 'UTC')::date"
_PG_NO_COURSE = "'00000000-0000-0000-0000-000000000000'::uuid"
_SQLITE_DAY = "date({})"
_SQLITE_NO_COURSE = "'00000000000000000000000000000000'"  # a Uuid column's text on SQLite
_TABLES = {
    "observations": "value_days_observations_changed",
    "treatment_sessions": "value_days_sessions_changed",
}


def upgrade() -> None:
    op.create_table(
        "value_days",
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("instrument", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("course_key", sa.Uuid(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint(
            "patient_id", "instrument", "day", "course_key", name=op.f("pk_value_days")
        ),
    )
    op.create_table(
        "value_days_stale",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("instrument", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("course_key", sa.Uuid(), nullable=False),
        sa.Column(
            "marked_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_value_days_stale")),
    )
    op.create_index("ix_value_days_stale_patient_day", "value_days_stale", ["patient_id", "day"])
    op.create_index("ix_value_days_stale_marked_at", "value_days_stale", ["marked_at"])
    if op.get_bind().dialect.name == "postgresql":
        _create_pg_triggers()
        day, no_course = _PG_DAY, _PG_NO_COURSE
    else:
        _create_sqlite_triggers()
        day, no_course = _SQLITE_DAY, _SQLITE_NO_COURSE
    # Every day that holds values starts stale.
    session_day = day.format("s.performed_at")
    op.execute(
        f"{_STALE} {_observation_days('observations', day, no_course, session_day)} "
        f"UNION {_session_days('treatment_sessions', day)}"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, function in _TABLES.items():
            for event in ("insert", "delete", "update_old", "update_new"):
                op.execute(f"DROP TRIGGER IF EXISTS {function}_{event} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    else:
        for function in _TABLES.values():
            for event in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {function}_{event}")
    op.drop_index("ix_value_days_stale_marked_at", table_name="value_days_stale")
    op.drop_index("ix_value_days_stale_patient_day", table_name="value_days_stale")
    op.drop_table("value_days_stale")
    op.drop_table("value_days")


def _create_pg_triggers() -> None:
    # Statement triggers with transition tables: a batch or a COPY marks each day once.
    session_day = _PG_DAY.format("s.performed_at")
    bodies = {
        "observations": _observation_days("changed_rows", _PG_DAY, _PG_NO_COURSE, session_day),
        "treatment_sessions": _session_days("changed_rows", _PG_DAY),
    }
    for table, function in _TABLES.items():
        op.execute(
            f"""
            CREATE FUNCTION {function}() RETURNS trigger AS $$
            BEGIN
                {_STALE} {bodies[table]};
                RETURN NULL;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        # A trigger with a transition table has one event; an UPDATE changes the old row's
        # day and the new row's.
        for event, verb, rows in (
            ("insert", "INSERT", "NEW"),
            ("delete", "DELETE", "OLD"),
            ("update_old", "UPDATE", "OLD"),
            ("update_new", "UPDATE", "NEW"),
        ):
            op.execute(
                f"CREATE TRIGGER {function}_{event} AFTER {verb} ON {table} "
                f"REFERENCING {rows} TABLE AS changed_rows "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )


def _create_sqlite_triggers() -> None:
    def body(table: str, row: str) -> str:
        # SQLite has no transition tables: the row is selected as a one-row table.
        if table == "observations":
            one = (
                f"(SELECT {row}.patient_id AS patient_id, {row}.instrument AS instrument, "
                f"{row}.recorded_at AS recorded_at, {row}.course_id AS course_id, "
                f"{row}.session_id AS session_id)"
            )
            session_day = _SQLITE_DAY.format("s.performed_at")
            return _observation_days(one, _SQLITE_DAY, _SQLITE_NO_COURSE, session_day)
        one = (
            f"(SELECT {row}.patient_id AS patient_id, {row}.performed_at AS performed_at, "
            f"{row}.course_id AS course_id, {row}.pain_before AS pain_before)"
        )
        return _session_days(one, _SQLITE_DAY)

    for table, function in _TABLES.items():
        for event, verb, rows in (
            ("insert", "INSERT", ("NEW",)),
            ("delete", "DELETE", ("OLD",)),
            ("update", "UPDATE", ("OLD", "NEW")),
        ):
            statements = "".join(f"{_STALE} {body(table, row)};" for row in rows)
            op.execute(
                f"CREATE TRIGGER {function}_{event} AFTER {verb} ON {table} BEGIN {statements} END"
            )
