"""The whole SMART Backend Services flow, as a Bulk Data client runs it: with nothing but its
client_id, its private key (PEM) and the token URL, it signs an assertion, gets a token, kicks
off `$export`, polls the status and downloads every file."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

from tests.factories import create_course, create_observation, create_patient, create_session
from tests.oauth.support import JWT_BEARER, TOKEN_URL, ec_signer, register, rsa_signer


async def bulk_client(
    http: httpx.AsyncClient, client_id: str, kid: str, private_pem: bytes, token_url: str
) -> dict[str, list[dict[str, Any]]]:
    """A Bulk Data client: what it knows is its arguments (and the FHIR base, next to the
    token URL on the same server)."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    alg = "ES384" if "EC" in type(key).__name__ else "RS384"
    assertion = jwt.encode(
        {
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "exp": int(time.time()) + 300,
            "jti": str(uuid.uuid4()),
        },
        key,  # type: ignore[arg-type]
        algorithm=alg,
        headers={"kid": kid},
    )
    token_response = await http.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion,
            "scope": "system/*.rs",
        },
    )
    assert token_response.status_code == 200, token_response.text
    bearer = {"Authorization": f"Bearer {token_response.json()['access_token']}"}
    fhir_base = token_url.removesuffix("/oauth/token") + "/fhir/R4"
    kick_off = await http.get(
        f"{fhir_base}/$export",
        headers=bearer | {"Prefer": "respond-async", "Accept": "application/fhir+json"},
    )
    assert kick_off.status_code == 202, kick_off.text
    status = await http.get(kick_off.headers["content-location"], headers=bearer)
    assert status.status_code == 200, status.text
    manifest = status.json()
    assert manifest["requiresAccessToken"] is True
    files: dict[str, list[dict[str, Any]]] = {}
    for output in manifest["output"]:
        download = await http.get(output["url"], headers=bearer)
        assert download.status_code == 200, download.text
        assert download.headers["content-type"].startswith("application/fhir+ndjson")
        files[output["type"]] = [json.loads(line) for line in download.text.splitlines()]
    return files


def _pem(key: Any) -> bytes:
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem


async def test_a_bulk_data_client_exports_everything_with_a_key_and_a_token_url(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    patients = []
    for n in range(2):
        patient = await create_patient(client, name=f"Bulk {n}")
        course = await create_course(client, patient["id"])
        await create_session(client, course["id"])
        for value in (7, 5):
            await create_observation(client, patient["id"], value=value, course_id=course["id"])
        patients.append(patient["id"])
    for signer in (rsa_signer("bulk-rsa"), ec_signer("bulk-ec")):
        client_id = await register(admin, signer, name="Warehouse", scope="system/*.rs")
        files = await bulk_client(anonymous, client_id, signer.kid, _pem(signer.key), TOKEN_URL)
        assert {name: len(lines) for name, lines in files.items()} == {
            "Patient": 2,
            "CarePlan": 2,
            "Procedure": 2,
            "Observation": 4,
        }
        assert sorted(p["id"] for p in files["Patient"]) == sorted(patients)
        assert all(o["resourceType"] == "Observation" for o in files["Observation"])
