"""SMART Backend Services: a client may be registered with the URL of its key set (`jwks_url`,
which the server fetches and the client rotates its keys at) instead of the keys themselves:
`oauth_clients.jwks` becomes nullable, and CHECK ((jwks IS NULL) <> (jwks_url IS NULL)) holds
each client to one or the other.

The downgrade cannot keep a client that has only a URL (the old schema needs its keys): each is
revoked, with an empty key set (it can no longer authenticate), and so is every token it was
issued; clients with keys are kept as they are.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-13 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ONE_KEY_SOURCE = "(jwks IS NULL) <> (jwks_url IS NULL)"


def upgrade() -> None:
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("jwks_url", sa.String(length=2000), nullable=True))
        batch_op.alter_column("jwks", existing_type=sa.JSON(), nullable=True)
        batch_op.create_check_constraint(op.f("ck_oauth_clients_key_source"), ONE_KEY_SOURCE)


def downgrade() -> None:
    op.execute(
        "UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP WHERE revoked_at IS NULL"
        " AND client_id IN (SELECT id FROM oauth_clients WHERE jwks IS NULL)"
    )
    op.execute(
        "UPDATE oauth_clients SET jwks = '{\"keys\": []}', jwks_url = NULL,"
        " revoked_at = COALESCE(revoked_at, CURRENT_TIMESTAMP) WHERE jwks IS NULL"
    )
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_oauth_clients_key_source"), type_="check")
        batch_op.alter_column("jwks", existing_type=sa.JSON(), nullable=False)
        batch_op.drop_column("jwks_url")
