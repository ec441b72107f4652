"""What analytics keeps between requests: each course's latest recommendation."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime


class CourseRecommendation(Base):
    """A course's latest recommendation (action and rule) as the recording pipeline last
    computed it: read with the policy's inputs, so a change is noticed without another read."""

    __tablename__ = "course_recommendations"

    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id"), primary_key=True)
    action: Mapped[str] = mapped_column(String(20))
    rule: Mapped[str | None] = mapped_column(String(50))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
