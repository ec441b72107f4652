"""Sessions a week is a whole number from 1 to 7 (app/courses/frequency.py), in courses and in
their frequency history: the columns become INTEGER with CHECK (sessions_per_week IN (1, ...,
7)).

A value stored before (any number in (0, 7]) is rounded to the nearest whole number, halves
away from zero (2.5 → 3), and kept within 1..7 (0.3 → 1), identically on both databases: the
rounding is NUMERIC's on each (PostgreSQL's round() of a double precision is the platform's).
The downgrade keeps the whole numbers as they are.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("courses", "frequency_changes")
WHOLE = "sessions_per_week IN (1, 2, 3, 4, 5, 6, 7)"
FRACTIONAL = "sessions_per_week > 0 AND sessions_per_week <= 7"  # 0001's
ROUNDED = (
    "CASE WHEN ROUND(CAST(sessions_per_week AS NUMERIC)) < 1 THEN 1"
    " WHEN ROUND(CAST(sessions_per_week AS NUMERIC)) > 7 THEN 7"
    " ELSE ROUND(CAST(sessions_per_week AS NUMERIC)) END"
)


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"UPDATE {table} SET sessions_per_week = {ROUNDED}")
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"ck_{table}_frequency_range"), type_="check")
            batch_op.alter_column(
                "sessions_per_week",
                existing_type=sa.Float(),
                type_=sa.Integer(),
                existing_nullable=False,
                postgresql_using="sessions_per_week::integer",
            )
            batch_op.create_check_constraint(op.f(f"ck_{table}_frequency_range"), WHOLE)


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"ck_{table}_frequency_range"), type_="check")
            batch_op.alter_column(
                "sessions_per_week",
                existing_type=sa.Integer(),
                type_=sa.Float(),
                existing_nullable=False,
                postgresql_using="sessions_per_week::double precision",
            )
            batch_op.create_check_constraint(op.f(f"ck_{table}_frequency_range"), FRACTIONAL)
