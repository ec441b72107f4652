"""Observations indexed by received_at, for FHIR `_lastUpdated` pulls across all patients.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 20:28:36.274309
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.create_index("ix_observations_received", ["received_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.drop_index("ix_observations_received")
