from __future__ import annotations

import uuid

from app.core.errors import NotFound


class DeviceNotFound(NotFound):
    def __init__(self, device_id: uuid.UUID) -> None:
        super().__init__(f"No device with id {device_id} is enrolled for this patient.")


class InvalidGrant(Exception):
    """An enrolment code or refresh token that is not (or no longer) valid: the token endpoint
    answers `invalid_grant` with one description whatever the reason, so a guesser learns
    nothing. `patient_id` is the patient the presented secret concerned, when it named one:
    for the audit trail only."""

    DESCRIPTION = "The code or refresh token is not valid, has expired or has been used."

    def __init__(self, patient_id: uuid.UUID | None = None) -> None:
        super().__init__(self.DESCRIPTION)
        self.patient_id = patient_id
