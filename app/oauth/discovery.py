"""SMART discovery: `.well-known/smart-configuration` under the FHIR base and at the root
(SMART App Launch 2.x, "Conformance"), open like the CapabilityStatement, which names the same
token endpoint (app/fhir/mapping.py, `rest.security`).

The routes go through the one access dependency like every other: their rules are open (no
token asked for, none looked up, nothing audited: no patient data).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from app.auth.access import authorize
from app.auth.scopes import RESOURCE_TYPES
from app.oauth.backend_services import GRANT_TYPE
from app.oauth.jwks import ALGORITHMS
from app.oauth.router import GRANTS, token_url
from app.oauth.schemas import SmartConfiguration

FHIR_BASE = "/fhir/R4"
WELL_KNOWN = "/.well-known/smart-configuration"
CAPABILITIES = (
    "client-confidential-asymmetric",  # private_key_jwt (Backend Services)
    "permission-v2",  # `system/Observation.rs`
    "permission-v1",  # `system/Observation.read`
    "permission-patient",  # `patient/` scopes, on tokens bound to a patient (enrolled apps)
)
# What a client may ask for (and what enrolled patient apps are granted).
SCOPES_SUPPORTED = (
    "system/*.rs",
    "system/*.read",
    *(f"system/{resource_type}.rs" for resource_type in RESOURCE_TYPES),
    "patient/*.rs",
    "patient/Observation.c",
)

router = APIRouter(tags=["discovery"], dependencies=[Depends(authorize)])
_OPEN: dict[str, Any] = {"security": []}  # no token: the OpenAPI document says so


def smart_configuration(token_endpoint: str) -> SmartConfiguration:
    # The grants the token endpoint serves, SMART's own first.
    grants = sorted(GRANTS, key=lambda name: (name != GRANT_TYPE, name))
    return SmartConfiguration(
        token_endpoint=token_endpoint,
        grant_types_supported=grants,
        token_endpoint_auth_methods_supported=["private_key_jwt"],
        token_endpoint_auth_signing_alg_values_supported=list(ALGORITHMS),
        scopes_supported=list(SCOPES_SUPPORTED),
        capabilities=list(CAPABILITIES),
        code_challenge_methods_supported=[],
    )


async def _configuration(request: Request) -> JSONResponse:
    """How to get a token here: the token endpoint, grants, client authentication, scopes
    (open: no token)."""
    document = smart_configuration(token_url(request))
    return JSONResponse(document.model_dump())


for _path, _name in ((FHIR_BASE + WELL_KNOWN, "fhir"), (WELL_KNOWN, "root")):
    router.add_api_route(
        _path,
        _configuration,
        methods=["GET"],
        name=f"smart_configuration_{_name}",
        summary="SMART configuration",
        response_model=SmartConfiguration,
        response_class=JSONResponse,
        openapi_extra=_OPEN,
    )
