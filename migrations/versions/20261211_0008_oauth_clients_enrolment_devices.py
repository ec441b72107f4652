"""SMART on FHIR and enrolment: registered OAuth clients (with the `jti` of each assertion
they used), enrolment codes, enrolled devices and their refresh tokens; tokens name the client
or device they were issued to and their scope, and so does each audit row.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-11 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("scope", sa.String(length=1000), nullable=False),
        sa.Column("jwks", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('integration', 'dashboard')", name=op.f("ck_oauth_clients_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_clients")),
    )
    op.create_table(
        "enrolment_codes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("lookup", sa.String(length=16), nullable=False),
        sa.Column("code_hash", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("burned_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_enrolment_codes_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolment_codes")),
    )
    with op.batch_alter_table("enrolment_codes", schema=None) as batch_op:
        batch_op.create_index("ix_enrolment_codes_lookup", ["lookup"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_enrolment_codes_patient_id"), ["patient_id"], unique=False
        )

    op.create_table(
        "oauth_client_assertions",
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["oauth_clients.id"],
            name=op.f("fk_oauth_client_assertions_client_id_oauth_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_id", "jti", name=op.f("pk_oauth_client_assertions")),
    )
    with op.batch_alter_table("oauth_client_assertions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_oauth_client_assertions_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "devices",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("enrolment_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["enrolment_id"],
            ["enrolment_codes.id"],
            name=op.f("fk_devices_enrolment_id_enrolment_codes"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_devices_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_refresh_tokens_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_tokens_token_hash")),
    )
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_refresh_tokens_device_id"), ["device_id"], unique=False
        )

    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("device_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("scope", sa.String(length=1000), nullable=True))
        batch_op.create_index(batch_op.f("ix_api_tokens_client_id"), ["client_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_api_tokens_device_id"), ["device_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_api_tokens_client_id_oauth_clients"),
            "oauth_clients",
            ["client_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_api_tokens_device_id_devices"), "devices", ["device_id"], ["id"]
        )

    # Plain ALTERs, never a batch copy: the table's append-only triggers (0003) must stay.
    op.add_column("audit_events", sa.Column("client_id", sa.Uuid(), nullable=True))
    op.add_column("audit_events", sa.Column("device_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_events", "device_id")
    op.drop_column("audit_events", "client_id")

    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_api_tokens_device_id_devices"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("fk_api_tokens_client_id_oauth_clients"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_api_tokens_device_id"))
        batch_op.drop_index(batch_op.f("ix_api_tokens_client_id"))
        batch_op.drop_column("scope")
        batch_op.drop_column("device_id")
        batch_op.drop_column("client_id")

    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refresh_tokens_device_id"))

    op.drop_table("refresh_tokens")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_patient_id"))

    op.drop_table("devices")
    with op.batch_alter_table("oauth_client_assertions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oauth_client_assertions_expires_at"))

    op.drop_table("oauth_client_assertions")
    with op.batch_alter_table("enrolment_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrolment_codes_patient_id"))
        batch_op.drop_index("ix_enrolment_codes_lookup")

    op.drop_table("enrolment_codes")
    op.drop_table("oauth_clients")
