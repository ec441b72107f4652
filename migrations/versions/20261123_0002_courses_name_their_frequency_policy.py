"""Courses name their frequency policy (existing courses run the default, standard-v1).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 19:47:47.143101
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("policy", sa.String(length=50), server_default="standard-v1", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.drop_column("policy")
