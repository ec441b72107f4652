from __future__ import annotations

import uuid

from app.core.errors import Conflict, NotFound, field_error


class PatientNotFound(NotFound):
    def __init__(self, patient_id: uuid.UUID) -> None:
        super().__init__(f"No patient with id {patient_id}.")


class ExternalIdTaken(Conflict):
    slug = "external-id-taken"

    def __init__(self) -> None:
        msg = "another patient already has this external_id"
        super().__init__(
            "Another patient already has this external_id.",
            [field_error(["body", "external_id"], msg)],
        )
