from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.courses.errors import CourseClosed, CourseNotFound
from app.courses.models import Course, FrequencyChange
from app.courses.repository import CourseRepository
from app.courses.schedule import RESUMED, phase_for
from app.courses.schemas import CourseCreate, CourseUpdate, FrequencyChangeCreate
from app.outbox import events
from app.patients.service import PatientService

FINAL_STATUSES = frozenset({"completed", "discontinued"})


class CourseService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = CourseRepository(session)

    async def get(self, course_id: uuid.UUID) -> Course:
        course = await self.repo.get(course_id)
        if course is None:
            raise CourseNotFound(course_id)
        return course

    async def get_for_patient(self, patient_id: uuid.UUID, course_id: uuid.UUID) -> Course:
        """The patient's course, or a 404 (also for another patient's course)."""
        await PatientService(self.session).get(patient_id)
        course = await self.repo.get(course_id)
        if course is None or course.patient_id != patient_id:
            raise CourseNotFound(course_id)
        return course

    async def page_for_patient(
        self, patient_id: uuid.UUID, *, status: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Course], str | None]:
        await PatientService(self.session).get(patient_id)
        return await self.repo.page_for_patient(
            patient_id, status=status, limit=limit, cursor=cursor
        )

    async def create(self, patient_id: uuid.UUID, data: CourseCreate) -> Course:
        await PatientService(self.session).get(patient_id)
        phase = phase_for(data.sessions_per_week)
        course = Course(
            id=uuid.uuid4(), patient_id=patient_id, phase=phase, status="active", sessions_done=0,
            **data.model_dump(),
        )  # fmt: skip
        initial = FrequencyChange(
            course_id=course.id,
            sessions_per_week=data.sessions_per_week,
            phase=phase,
            changed_at=utcnow(),
            source="initial",
            rule=None,
            reason=f"initial prescription: {_per_week(data.sessions_per_week)}",
        )
        await self.repo.add(course)
        await self.repo.add(initial)
        return course

    async def update(self, course_id: uuid.UUID, data: CourseUpdate) -> Course:
        course = await self.repo.get_for_update(course_id)  # (as change_frequency)
        if course is None:
            raise CourseNotFound(course_id)
        changes = data.model_dump(exclude_unset=True)
        new_status = changes.get("status")
        if (
            new_status is not None
            and new_status != course.status
            and course.status in FINAL_STATUSES
        ):
            raise CourseClosed(course.status, "its status cannot change")
        previous = course.status
        if new_status is not None and new_status != previous:
            await self._status_moment(course, new_status)
        for field, value in changes.items():
            setattr(course, field, value)
        await self.session.flush()
        if new_status is not None and new_status != previous:
            event = events.status_changed(
                patient_id=course.patient_id, course_id=course.id, status=new_status,
                previous=previous, at=utcnow(),
            )  # fmt: skip
            await self.session.execute(events.ADD_EVENT, dict(event))
        return course

    async def _status_moment(self, course: Course, new_status: str) -> None:
        """Remember when a course pauses, resumes or ends. A resume also writes a history row
        (the clinician's, at the same frequency): the schedule restarts from it, and a long
        pause is for a clinician to review (policy standard-v2)."""
        now = utcnow()
        if new_status == "paused":
            course.paused_at = now
        elif new_status in FINAL_STATUSES:
            course.ended_at = now
        elif new_status == "active" and course.status == "paused":
            course.resumed_at = now
            paused_since = course.paused_at or course.updated_at
            days = max(0, (now - paused_since).days)
            await self.repo.add(
                FrequencyChange(
                    course_id=course.id,
                    sessions_per_week=course.sessions_per_week,
                    phase=course.phase,
                    changed_at=now,
                    source="clinician",
                    rule=RESUMED,
                    reason=f"resumed after {days} day{'' if days == 1 else 's'} paused",
                )
            )

    async def change_frequency(self, course_id: uuid.UUID, data: FrequencyChangeCreate) -> Course:
        """A clinician's change: always applied, and recorded with source `clinician`. The
        course is locked first, so concurrent changes apply one after the other: each reads
        the frequency the one before set, and the history's times, the events' order and the
        course's final frequency agree."""
        course = await self.repo.get_for_update(course_id)
        if course is None:
            raise CourseNotFound(course_id)
        if course.status in FINAL_STATUSES:
            raise CourseClosed(course.status, "its frequency cannot change")
        previous = course.sessions_per_week
        course.sessions_per_week = data.sessions_per_week
        course.phase = phase_for(data.sessions_per_week)
        change = FrequencyChange(
            id=uuid.uuid4(),
            course_id=course.id,
            sessions_per_week=data.sessions_per_week,
            phase=course.phase,
            changed_at=utcnow(),
            source="clinician",
            rule=None,
            reason=data.reason,
        )
        await self.repo.add(change)
        # The same transaction as the change: the event exists if and only if it commits.
        event = events.frequency_changed(
            patient_id=course.patient_id, course_id=course.id, change_id=change.id,
            previous=previous, sessions_per_week=change.sessions_per_week, phase=change.phase,
            source="clinician", rule=None, changed_at=change.changed_at,
        )  # fmt: skip
        await self.session.execute(events.ADD_EVENT, dict(event))
        return course

    async def history(self, course_id: uuid.UUID) -> list[FrequencyChange]:
        await self.get(course_id)
        return await self.repo.history(course_id)


def _per_week(sessions_per_week: int) -> str:
    return f"{sessions_per_week} session{'' if sessions_per_week == 1 else 's'} a week"
