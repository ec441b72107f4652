"""Discovery, open as FHIR servers serve it: the CapabilityStatement (its `rest.security` names
SMART on FHIR and the token endpoint) and `.well-known/smart-configuration`, under the FHIR
base and at the root. A token sent to them is ignored, whatever it is; nothing is audited.
Then the SMART Python client (fhirclient) discovers the server and reads through it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fhirclient import client as smart
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.oauth.router import GRANTS
from tests.factories import API, create_observation, create_patient
from tests.fhir.support import assert_valid
from tests.oauth.support import ec_signer, get_token, register, rsa_signer
from tests.support import Issue, MakeClient, audit_rows, client_of, running

SMART_PATHS = ("/fhir/R4/.well-known/smart-configuration", "/.well-known/smart-configuration")
OPEN = ("/fhir/R4/metadata", *SMART_PATHS)
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
GRANT = "client_credentials"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def _security(statement: dict[str, Any]) -> dict[str, Any]:
    security: dict[str, Any] = statement["rest"][0]["security"]
    return security


async def test_the_capability_statement_names_smart_and_the_token_endpoint(
    anonymous: httpx.AsyncClient,
) -> None:
    response = await anonymous.get("/fhir/R4/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    statement = assert_valid(response.json())
    security = _security(statement)
    assert security["cors"] is False  # no browser origins configured
    [service] = security["service"]
    assert service["coding"] == [
        {"system": SECURITY_SERVICE, "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}
    ]
    [oauth] = [e for e in security["extension"] if e["url"] == OAUTH_URIS]
    assert oauth["extension"] == [{"url": "token", "valueUri": "http://test/oauth/token"}]


async def test_cors_says_whether_browsers_may_call(settings: Settings) -> None:
    async with (
        running(settings, cors_origins=["https://dash.example"]) as application,
        client_of(application) as anonymous,
    ):
        statement = (await anonymous.get("/fhir/R4/metadata")).json()
    assert _security(statement)["cors"] is True


@pytest.mark.parametrize("path", SMART_PATHS)
async def test_the_smart_configuration(anonymous: httpx.AsyncClient, path: str) -> None:
    response = await anonymous.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document == {
        "token_endpoint": "http://test/oauth/token",
        "grant_types_supported": ["client_credentials", *sorted(set(GRANTS) - {GRANT})],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": [
            "system/*.rs", "system/*.read", "system/Patient.rs", "system/CarePlan.rs",
            "system/Procedure.rs", "system/Observation.rs", "patient/*.rs",
            "patient/Observation.c",
        ],
        "capabilities": [
            "client-confidential-asymmetric", "permission-v2", "permission-v1",
            "permission-patient",
        ],
        "code_challenge_methods_supported": [],
    }  # fmt: skip
    assert set(document["grant_types_supported"]) == set(GRANTS)


@pytest.mark.parametrize("path", OPEN)
@pytest.mark.parametrize(
    "credential", [None, "not-a-token", "Basic x", "expired", "revoked"], ids=str
)
async def test_open_routes_ignore_whatever_token_is_sent(
    anonymous: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    issue_token: Issue,
    engine: AsyncEngine,
    path: str,
    credential: str | None,
) -> None:
    """Discovery must work before a client has a token, and with one it may not know is
    stale: the Authorization header is not read (it is not even looked up)."""
    headers = {}
    if credential == "expired":
        headers["Authorization"] = f"Bearer {await issue_token('clinician', None, 1e-9)}"
    elif credential == "revoked":
        issued = (await admin.post(f"{API}/tokens", json={"role": "clinician"})).json()
        await admin.delete(f"{API}/tokens/{issued['id']}")
        headers["Authorization"] = f"Bearer {issued['token']}"
    elif credential is not None:
        headers["Authorization"] = (
            credential if credential.startswith("Basic") else f"Bearer {credential}"
        )
    response = await anonymous.get(path, headers=headers)
    assert response.status_code == 200, response.text
    assert "www-authenticate" not in response.headers
    assert await audit_rows(engine, response.headers["x-request-id"]) == 0


async def test_open_routes_still_check_their_parameters(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/fhir/R4/metadata", params={"_format": "xml"})
    assert response.status_code == 406
    # a NUL is refused as on every route (a 400 OperationOutcome under /fhir)
    response = await anonymous.get("/fhir/R4/metadata", params={"_format": "json\x00"})
    assert response.status_code == 400


def test_the_openapi_document_says_they_are_open(app: Any) -> None:
    paths = app.openapi()["paths"]
    for path in OPEN:
        assert paths[path]["get"]["security"] == [], path
    assert paths["/fhir/R4/Observation"]["get"]["security"] == [{"bearerAuth": []}]


# --- the SMART Python client ------------------------------------------------------------------


def smart_client_reads(
    base_url: str, client_id: str, assertion: str, patient_id: str
) -> dict[str, Any]:
    """What fhirclient does with SMART Backend Services: read the CapabilityStatement (open)
    for the token endpoint, get a token with the assertion, then read with it."""
    settings = {
        "app_id": client_id,
        "api_base": f"{base_url}/fhir/R4",
        "jwt_token": assertion,
        "scope": "system/*.rs",
    }
    client = smart.FHIRClient(settings=settings)
    seen: dict[str, Any] = {"ready_before": client.prepare()}  # reads /metadata, no token
    seen["token_uri"] = client.server.auth._token_uri
    client.authorize()  # client_credentials with the assertion (and `launch/patient`)
    seen["ready_after"] = client.ready
    patient = Patient.read(patient_id, client.server)
    seen["patient"] = patient.as_json()
    search = Observation.where(struct={"patient": patient_id})
    seen["observations"] = [o.as_json() for o in search.perform_resources_iter(client.server)]
    return seen


async def test_fhirclient_discovers_the_server_and_reads_with_backend_services(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, live_server: str
) -> None:
    patient = await create_patient(client, name="Ada Lovelace")
    observation = await create_observation(client, patient["id"], value=3)
    signer = rsa_signer()
    client_id = await register(admin, signer, scope="system/Patient.rs system/Observation.rs")
    async with httpx.AsyncClient() as plain:
        smart_configuration = (await plain.get(f"{live_server}{SMART_PATHS[0]}")).json()
    token_url = smart_configuration["token_endpoint"]
    assertion = signer.assertion(client_id, aud=token_url)

    seen = await asyncio.to_thread(
        smart_client_reads, live_server, client_id, assertion, patient["id"]
    )

    assert seen["ready_before"] is False  # it knows where to ask, not yet a token
    assert seen["token_uri"] == token_url == f"{live_server}/oauth/token"
    assert seen["ready_after"] is True
    assert seen["patient"]["name"] == [{"text": "Ada Lovelace"}]
    assert [o["id"] for o in seen["observations"]] == [observation["id"]]


async def test_a_token_from_the_endpoint_works_with_fhirclient_given_it(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    live_server: str,
) -> None:
    """The other way round: a token obtained at /oauth/token handed to fhirclient's state."""
    patient = await create_patient(client, name="Grace Hopper")
    signer = ec_signer()
    client_id = await register(admin, signer)
    async with httpx.AsyncClient() as plain:
        response = await plain.post(
            f"{live_server}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": signer.assertion(client_id, aud=f"{live_server}/oauth/token"),
                "scope": "system/Patient.rs",
            },
        )
    token = response.json()["access_token"]

    def read() -> dict[str, Any]:
        state = {
            "app_id": client_id,
            "server": {
                "base_uri": f"{live_server}/fhir/R4/",
                "auth_type": "oauth2",
                "auth": {"access_token": token},
            },
        }
        fhir = smart.FHIRClient(state=state)
        result: dict[str, Any] = Patient.read(patient["id"], fhir.server).as_json()
        return result

    assert (await asyncio.to_thread(read))["name"] == [{"text": "Grace Hopper"}]


async def test_a_client_sees_nothing_of_an_unknown_patient(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, make_client: MakeClient
) -> None:
    signer = ec_signer()
    client_id = await register(admin, signer)
    ehr = make_client((await get_token(anonymous, client_id, signer))["access_token"])
    response = await ehr.get(f"/fhir/R4/Patient/{uuid.uuid4()}")
    assert response.status_code == 404
