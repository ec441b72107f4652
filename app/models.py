"""Every model, imported once so metadata (and Alembic) sees the whole schema."""

from app.courses.models import Course, FrequencyChange
from app.observations.models import Observation
from app.patients.models import Patient
from app.treatment_sessions.models import TreatmentSession

__all__ = ["Course", "FrequencyChange", "Observation", "Patient", "TreatmentSession"]
