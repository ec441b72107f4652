from __future__ import annotations

import uuid

from app.core.errors import Conflict, NotFound


class CourseNotFound(NotFound):
    def __init__(self, course_id: uuid.UUID) -> None:
        super().__init__(f"No course with id {course_id}.")


class CourseClosed(Conflict):
    """A completed or discontinued course is final."""

    slug = "course-closed"

    def __init__(self, status: str, what: str) -> None:
        super().__init__(f"The course is {status}: {what}.")


class CourseNotActive(Conflict):
    slug = "course-not-active"

    def __init__(self, status: str) -> None:
        super().__init__(f"Sessions can only be logged on an active course; this one is {status}.")
