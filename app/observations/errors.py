from __future__ import annotations

from app.core.errors import Conflict, Unprocessable, field_error


class ObservationIdConflict(Conflict):
    """A client-supplied id that is already stored with different content."""

    slug = "observation-id-conflict"
    msg = "an observation with this id already exists with different content"

    def __init__(self) -> None:
        super().__init__(
            "An observation with this id already exists with different content.",
            [field_error(["body", "id"], self.msg)],
        )


class InvalidReference(Unprocessable):
    """A course_id or session_id that does not belong to the observation's patient."""

    COURSE_MSG = "not a course of this patient"
    SESSION_MSG = "not a session of this patient"
    SESSION_COURSE_MSG = "not a session of the given course"

    def __init__(self, field: str, msg: str) -> None:
        super().__init__(f"body.{field}: {msg}", [field_error(["body", field], msg)])
