"""Initial schema: patients, courses with their frequency history, session logs, observations.

The observations value CHECK is generated from app/observations/catalogue.py (value_check_sql);
a catalogue change that alters a range ships a migration with the new expression.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 19:32:39.454968
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "patients",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("sex", sa.String(length=10), nullable=True),
        sa.Column("condition", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "sex IN ('female', 'male', 'other', 'unknown')", name=op.f("ck_patients_sex")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
        sa.UniqueConstraint("external_id", name=op.f("uq_patients_external_id")),
    )
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.create_index("ix_patients_created", ["created_at", "id"], unique=False)

    op.create_table(
        "courses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("indication", sa.String(length=200), nullable=False),
        sa.Column("region", sa.String(length=100), nullable=False),
        sa.Column("technique", sa.String(length=20), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("sessions_per_week", sa.Float(), nullable=False),
        sa.Column("adjustment", sa.String(length=10), nullable=False),
        sa.Column("max_sessions", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("phase", sa.String(length=20), nullable=False),
        sa.Column("sessions_done", sa.Integer(), nullable=False),
        sa.Column("last_session_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("adjustment IN ('auto', 'confirm')", name=op.f("ck_courses_adjustment")),
        sa.CheckConstraint(
            "phase IN ('induction', 'consolidation', 'maintenance')", name=op.f("ck_courses_phase")
        ),
        sa.CheckConstraint(
            "status IN ('active', 'paused', 'completed', 'discontinued')",
            name=op.f("ck_courses_status"),
        ),
        sa.CheckConstraint(
            "technique IN ('intramuscular', 'paravertebral', 'subcutaneous', 'intra-articular')",
            name=op.f("ck_courses_technique"),
        ),
        sa.CheckConstraint(
            "max_sessions IS NULL OR max_sessions >= 1",
            name=op.f("ck_courses_max_sessions_positive"),
        ),
        sa.CheckConstraint(
            "sessions_done >= 0", name=op.f("ck_courses_sessions_done_non_negative")
        ),
        sa.CheckConstraint(
            "sessions_per_week > 0 AND sessions_per_week <= 7",
            name=op.f("ck_courses_frequency_range"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_courses_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_courses")),
    )
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.create_index(
            "ix_courses_patient_created", ["patient_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "frequency_changes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("course_id", sa.Uuid(), nullable=False),
        sa.Column("sessions_per_week", sa.Float(), nullable=False),
        sa.Column("phase", sa.String(length=20), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("rule", sa.String(length=50), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "phase IN ('induction', 'consolidation', 'maintenance')",
            name=op.f("ck_frequency_changes_phase"),
        ),
        sa.CheckConstraint(
            "source IN ('initial', 'policy', 'clinician')", name=op.f("ck_frequency_changes_source")
        ),
        sa.CheckConstraint(
            "sessions_per_week > 0 AND sessions_per_week <= 7",
            name=op.f("ck_frequency_changes_frequency_range"),
        ),
        sa.ForeignKeyConstraint(
            ["course_id"], ["courses.id"], name=op.f("fk_frequency_changes_course_id_courses")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_frequency_changes")),
    )
    with op.batch_alter_table("frequency_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_frequency_changes_course_changed", ["course_id", "changed_at", "id"], unique=False
        )

    op.create_table(
        "treatment_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("course_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("performed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("technique", sa.String(length=50), nullable=True),
        sa.Column("sites", sa.JSON(), nullable=False),
        sa.Column("ozone_concentration_ug_ml", sa.Float(), nullable=True),
        sa.Column("volume_ml", sa.Float(), nullable=True),
        sa.Column("injection_points", sa.Integer(), nullable=True),
        sa.Column("pain_before", sa.Integer(), nullable=True),
        sa.Column("pain_after", sa.Integer(), nullable=True),
        sa.Column("adverse_events", sa.JSON(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "injection_points IS NULL OR (injection_points >= 1 AND injection_points <= 50)",
            name=op.f("ck_treatment_sessions_injection_points_range"),
        ),
        sa.CheckConstraint("number >= 1", name=op.f("ck_treatment_sessions_number_positive")),
        sa.CheckConstraint(
            "ozone_concentration_ug_ml IS NULL OR (ozone_concentration_ug_ml >= 1 AND ozone_concentration_ug_ml <= 80)",
            name=op.f("ck_treatment_sessions_ozone_concentration_range"),
        ),
        sa.CheckConstraint(
            "pain_after IS NULL OR (pain_after >= 0 AND pain_after <= 10)",
            name=op.f("ck_treatment_sessions_pain_after_range"),
        ),
        sa.CheckConstraint(
            "pain_before IS NULL OR (pain_before >= 0 AND pain_before <= 10)",
            name=op.f("ck_treatment_sessions_pain_before_range"),
        ),
        sa.CheckConstraint(
            "volume_ml IS NULL OR (volume_ml >= 0 AND volume_ml <= 50)",
            name=op.f("ck_treatment_sessions_volume_range"),
        ),
        sa.ForeignKeyConstraint(
            ["course_id"], ["courses.id"], name=op.f("fk_treatment_sessions_course_id_courses")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_treatment_sessions_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_treatment_sessions")),
        sa.UniqueConstraint(
            "course_id", "number", name=op.f("uq_treatment_sessions_course_id_number")
        ),
    )
    with op.batch_alter_table("treatment_sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_treatment_sessions_course_performed",
            ["course_id", "performed_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_treatment_sessions_patient_performed",
            ["patient_id", "performed_at", "id"],
            unique=False,
        )

    op.create_table(
        "observations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("instrument", sa.String(length=40), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("course_id", sa.Uuid(), nullable=True),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("context", sa.String(length=10), nullable=True),
        sa.Column("source", sa.String(length=10), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(instrument = 'pain-nrs' AND value >= 0 AND value <= 10 AND value = round(value)) OR (instrument = 'pain-vas' AND value >= 0 AND value <= 100) OR (instrument = 'odi' AND value >= 0 AND value <= 100) OR (instrument = 'ndi' AND value >= 0 AND value <= 100) OR (instrument = 'schober' AND value >= 0 AND value <= 15) OR (instrument = 'finger-floor' AND value >= 0 AND value <= 80) OR (instrument = 'rom-lumbar-flexion' AND value >= 0 AND value <= 120) OR (instrument = 'rom-lumbar-extension' AND value >= 0 AND value <= 60) OR (instrument = 'rom-cervical-flexion' AND value >= 0 AND value <= 90) OR (instrument = 'rom-cervical-rotation' AND value >= 0 AND value <= 110)",
            name=op.f("ck_observations_value_in_instrument_range"),
        ),
        sa.CheckConstraint(
            "context IN ('rest', 'movement', 'night', 'morning')",
            name=op.f("ck_observations_context"),
        ),
        sa.CheckConstraint(
            "source IN ('patient', 'clinician', 'device')", name=op.f("ck_observations_source")
        ),
        sa.ForeignKeyConstraint(
            ["course_id"], ["courses.id"], name=op.f("fk_observations_course_id_courses")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_observations_patient_id_patients")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_sessions.id"],
            name=op.f("fk_observations_session_id_treatment_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observations")),
    )
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.create_index("ix_observations_course_id", ["course_id"], unique=False)
        batch_op.create_index(
            "ix_observations_patient_instrument_recorded",
            ["patient_id", "instrument", "recorded_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_observations_patient_recorded", ["patient_id", "recorded_at", "id"], unique=False
        )
        batch_op.create_index("ix_observations_session_id", ["session_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.drop_index("ix_observations_session_id")
        batch_op.drop_index("ix_observations_patient_recorded")
        batch_op.drop_index("ix_observations_patient_instrument_recorded")
        batch_op.drop_index("ix_observations_course_id")

    op.drop_table("observations")
    with op.batch_alter_table("treatment_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_treatment_sessions_patient_performed")
        batch_op.drop_index("ix_treatment_sessions_course_performed")

    op.drop_table("treatment_sessions")
    with op.batch_alter_table("frequency_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_frequency_changes_course_changed")

    op.drop_table("frequency_changes")
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.drop_index("ix_courses_patient_created")

    op.drop_table("courses")
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_index("ix_patients_created")

    op.drop_table("patients")
