"""Every model, imported once so metadata (and Alembic) sees the whole schema."""

from app.analytics.models import CourseRecommendation
from app.audit.models import AuditEvent
from app.auth.models import ApiToken, IdempotencyKey
from app.courses.models import Course, FrequencyChange
from app.enrolment.models import Device, EnrolmentCode, RefreshToken
from app.fhir.models import ExportJob
from app.oauth.models import ClientAssertion, OAuthClient, TokenEndpointFailure
from app.observations.models import Observation
from app.outbox.models import OutboxEvent
from app.patients.models import Patient
from app.push.models import PushDelivery, PushSubscription
from app.treatment_sessions.models import TreatmentSession

__all__ = [
    "ApiToken",
    "AuditEvent",
    "ClientAssertion",
    "Course",
    "CourseRecommendation",
    "Device",
    "EnrolmentCode",
    "ExportJob",
    "FrequencyChange",
    "IdempotencyKey",
    "OAuthClient",
    "Observation",
    "OutboxEvent",
    "Patient",
    "PushDelivery",
    "PushSubscription",
    "RefreshToken",
    "TokenEndpointFailure",
    "TreatmentSession",
]
