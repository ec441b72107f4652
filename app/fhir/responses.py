"""`application/fhir+json` responses, and every error under `/fhir/` as an OperationOutcome."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from app.core.errors import ErrorReport
from app.fhir.mapping import operation_outcome

FHIR_MEDIA_TYPE = "application/fhir+json"


class FhirResponse(JSONResponse):
    media_type = FHIR_MEDIA_TYPE


def outcome_response(report: ErrorReport) -> FhirResponse:
    """The error the core handlers report, as FHIR answers it.

    A request validation error (422 in the business API) is a 400 here: FHIR answers bad
    search or operation parameters with 400 and keeps 422 for resource content it rejects,
    and this API accepts no content. The headers (e.g. `WWW-Authenticate`) are kept.
    """
    status = 400 if report.status == 422 else report.status
    diagnostics = [
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in report.errors
    ] or [report.detail]
    return FhirResponse(
        operation_outcome(status, diagnostics),
        status_code=status,
        headers=dict(report.headers) if report.headers else None,
    )
