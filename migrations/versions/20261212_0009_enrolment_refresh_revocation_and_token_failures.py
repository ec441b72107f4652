"""Patient app enrolment: a refresh token records when it was revoked (with its device), and
the token endpoint counts each client address's refused requests per window of time
(app/oauth/throttle.py).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-12 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "oauth_failures",
        sa.Column("caller", sa.String(length=100), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("caller", "window_start", name=op.f("pk_oauth_failures")),
    )
    with op.batch_alter_table("oauth_failures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_oauth_failures_window_start"), ["window_start"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("oauth_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oauth_failures_window_start"))

    op.drop_table("oauth_failures")
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
