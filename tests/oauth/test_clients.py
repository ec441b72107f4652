"""Client registration (`/api/v1/clients`, admins): public keys only, of the kinds SMART
names, each a real key with its own kid; registered `system/` scopes of this server's types;
listing; revocation. Who may use the routes is in tests/auth/test_contract.py."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit.models import AuditEvent
from app.core.config import Settings
from app.oauth.jwks import KID_TAKEN, NOT_AN_RSA_KEY, NOT_ON_THE_CURVE, RSA_TOO_SHORT
from app.oauth.models import OAuthClient
from app.oauth.schemas import KEY_SOURCE_MISSING, KEY_SOURCES_BOTH, PRIVATE_PART
from app.oauth.service import JWKS_HTTP_REFUSED
from tests.factories import API
from tests.oauth.support import client_body, ec_signer, rsa_signer
from tests.support import Issue, assert_problem, client_of, running, walk_pages

CLIENTS = f"{API}/clients"


async def client_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(OAuthClient)) or 0)


async def test_an_admin_registers_a_client_with_rsa_and_ec_keys(
    admin: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    body = client_body(rsa_signer(), ec_signer(), name="Hospital EHR", scope="system/*.rs")
    response = await admin.post(CLIENTS, json=body)
    assert response.status_code == 201, response.text
    client = response.json()
    assert set(client) == {
        "client_id", "name", "role", "scope", "jwks", "jwks_url", "created_at", "revoked_at"
    }  # fmt: skip
    uuid.UUID(client["client_id"])
    assert (client["name"], client["role"], client["scope"]) == (
        "Hospital EHR",
        "integration",
        "system/*.rs",
    )
    assert client["jwks"] == body["jwks"]  # public keys, as given
    assert client["jwks_url"] is None
    assert client["revoked_at"] is None
    # its audit row names the client registered
    async with engine.connect() as conn:
        resource_id = await conn.scalar(
            select(AuditEvent.resource_id).where(
                AuditEvent.request_id == response.headers["x-request-id"]
            )
        )
    assert resource_id == client["client_id"]


async def test_clients_are_listed_oldest_first_in_pages(admin: httpx.AsyncClient) -> None:
    ids = []
    for n in range(3):
        body = client_body(ec_signer(), name=f"client {n}", role="dashboard")
        ids.append((await admin.post(CLIENTS, json=body)).json()["client_id"])
    pages = await walk_pages(admin, CLIENTS, limit=2)
    assert [len(page) for page in pages] == [2, 1]
    assert [item["client_id"] for page in pages for item in page] == ids


async def test_revoking_a_client(admin: httpx.AsyncClient) -> None:
    client_id = (await admin.post(CLIENTS, json=client_body(ec_signer()))).json()["client_id"]
    assert (await admin.delete(f"{CLIENTS}/{client_id}")).status_code == 204
    assert (await admin.delete(f"{CLIENTS}/{client_id}")).status_code == 204  # again: the same
    [listed] = (await admin.get(CLIENTS)).json()["items"]
    assert listed["revoked_at"] is not None
    missing = assert_problem(await admin.delete(f"{CLIENTS}/{uuid.uuid4()}"), 404)
    assert missing["type"].endswith("not-found")
    assert_problem(await admin.delete(f"{CLIENTS}/not-a-uuid"), 422, loc=["path", "client_id"])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _short_rsa_padded_to_2048() -> dict[str, Any]:
    """A 2040-bit modulus written with a leading zero byte: as long as a 2048-bit one."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2040)  # noqa: S505 (too small: the point)
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    modulus = key.public_key().public_numbers().n.to_bytes(255, "big")
    return jwk | {"n": _b64(b"\x00" + modulus), "kid": "short"}


def _rsa_1024() -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (too small: the point)
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return jwk | {"kid": "small"}


KEY = ["body", "jwks", "keys", 0]


def _bad_keys() -> list[tuple[str, list[dict[str, Any]], list[Any], str | None]]:
    """(case, keys, the error's loc, its message or None for the schema's own)."""
    rsa_key, ec_key = rsa_signer(), ec_signer()
    other_ec = ec_signer("ec-other")
    off_curve = ec_key.jwk() | {"y": other_ec.jwk()["y"]}
    return [
        ("RSA private key", [rsa_key.private_jwk()], [*KEY, "RSA", "d"], PRIVATE_PART),
        ("RSA prime", [rsa_key.jwk(p="AQAB")], [*KEY, "RSA", "p"], PRIVATE_PART),
        ("EC private key", [ec_key.private_jwk()], [*KEY, "EC", "d"], PRIVATE_PART),
        ("RSA 1024", [_rsa_1024()], [*KEY, "RSA", "n"], None),
        ("RSA 2040, padded", [_short_rsa_padded_to_2048()], [*KEY, "n"], RSA_TOO_SHORT),
        ("RSA even exponent", [rsa_key.jwk(e="AQAA")], [*KEY, "n"], NOT_AN_RSA_KEY),
        ("EC P-256", [ec_signer("p256", "P-256").jwk()], [*KEY, "EC", "crv"], None),
        ("EC point off the curve", [off_curve], [*KEY, "y"], NOT_ON_THE_CURVE),
        ("no kid", [{k: v for k, v in ec_key.jwk().items() if k != "kid"}],
         [*KEY, "EC", "kid"], None),
        ("same kid twice", [rsa_key.jwk(kid="k"), ec_key.jwk(kid="k")],
         ["body", "jwks", "keys", 1, "kid"], KID_TAKEN),
        ("symmetric key", [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}], KEY, None),
        ("RS256 key", [rsa_key.jwk(alg="RS256")], [*KEY, "RSA", "alg"], None),
        ("an encryption key", [rsa_key.jwk(use="enc")], [*KEY, "RSA", "use"], None),
        ("no keys", [], ["body", "jwks", "keys"], None),
    ]  # fmt: skip


BAD_KEYS = _bad_keys()


@pytest.mark.parametrize(
    ("keys", "loc", "msg"), [case[1:] for case in BAD_KEYS], ids=[case[0] for case in BAD_KEYS]
)
async def test_keys_that_are_not_acceptable_public_keys_are_a_422_naming_the_field(
    admin: httpx.AsyncClient,
    engine: AsyncEngine,
    keys: list[dict[str, Any]],
    loc: list[Any],
    msg: str | None,
) -> None:
    body = client_body() | {"jwks": {"keys": keys}}
    problem = assert_problem(await admin.post(CLIENTS, json=body), 422, loc=loc)
    if msg is not None:
        assert {"loc": loc, "msg": msg} in problem["errors"]
    assert await client_count(engine) == 0
    for secret in ("d", "p"):  # a private part is never echoed
        value = keys[0].get(secret) if keys else None
        if value and len(value) > 8:
            assert value not in str(problem)


@pytest.mark.parametrize(
    ("scope", "reason"),
    [
        ("patient/*.rs", "system/"),
        ("user/Observation.rs", "system/"),
        ("system/Practitioner.rs", "no Practitioner"),
        ("system/*.sr", "in order"),
        ("system/Observation.rs?category=laboratory", "granular"),
        ("openid", "system/"),
        ("system/*.rs  system/Patient.r", "not a SMART scope"),
        ("", "not a SMART scope"),
    ],
)
async def test_a_scope_that_cannot_be_registered_is_a_422_saying_why(
    admin: httpx.AsyncClient, scope: str, reason: str
) -> None:
    body = client_body(ec_signer()) | {"scope": scope}
    problem = assert_problem(await admin.post(CLIENTS, json=body), 422, loc=["body", "scope"])
    assert reason in problem["detail"]


@pytest.mark.parametrize(
    "scope", ["system/*.rs", "system/Observation.read", "system/Patient.r system/CarePlan.rs"]
)
async def test_registered_scopes_in_v2_and_v1_forms(admin: httpx.AsyncClient, scope: str) -> None:
    response = await admin.post(CLIENTS, json=client_body(ec_signer()) | {"scope": scope})
    assert response.status_code == 201, response.text
    assert response.json()["scope"] == scope


@pytest.mark.parametrize(
    ("field", "value"),
    [("role", "clinician"), ("role", "admin"), ("name", ""), ("name", " "), ("unknown", 1)],
)
async def test_other_invalid_bodies(
    admin: httpx.AsyncClient, engine: AsyncEngine, field: str, value: Any
) -> None:
    body = client_body(ec_signer()) | {field: value}
    assert_problem(await admin.post(CLIENTS, json=body), 422, loc=["body", field])
    assert await client_count(engine) == 0


def test_a_registered_client_links_to_its_revocation(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    links = paths[CLIENTS]["post"]["responses"]["201"]["links"]
    revoke = paths[f"{CLIENTS}/{{client_id}}"]["delete"]["operationId"]
    assert links[revoke]["parameters"] == {"client_id": "$response.body#/client_id"}


# --- a key set URL instead of the keys --------------------------------------------------------

JWKS_URL = "https://ehr.example/.well-known/jwks.json"


def url_body(**fields: Any) -> dict[str, Any]:
    body = {"name": "EHR", "role": "integration", "scope": "system/*.rs", "jwks_url": JWKS_URL}
    return {name: value for name, value in (body | fields).items() if value is not None}


async def test_an_admin_registers_a_client_by_the_https_url_of_its_key_set(
    admin: httpx.AsyncClient,
) -> None:
    response = await admin.post(CLIENTS, json=url_body())
    assert response.status_code == 201, response.text  # nothing fetched: the URL is not real
    client = response.json()
    assert (client["jwks"], client["jwks_url"]) == (None, JWKS_URL)
    [listed] = (await admin.get(CLIENTS)).json()["items"]
    assert (listed["jwks"], listed["jwks_url"]) == (None, JWKS_URL)


@pytest.mark.parametrize(
    ("fields", "msg"),
    [
        ({"jwks": {"keys": [ec_signer().jwk()]}}, KEY_SOURCES_BOTH),
        ({"jwks_url": None}, KEY_SOURCE_MISSING),
        ({"jwks_url": None, "jwks": None}, KEY_SOURCE_MISSING),
    ],
    ids=["both", "neither", "both null"],
)
async def test_a_client_has_its_keys_or_their_url_not_both_nor_neither(
    admin: httpx.AsyncClient, engine: AsyncEngine, fields: dict[str, Any], msg: str
) -> None:
    body = url_body(**fields)
    if fields.get("jwks", "") is None:
        body["jwks"] = None
    problem = assert_problem(await admin.post(CLIENTS, json=body), 422, loc=["body", "jwks_url"])
    assert {"loc": ["body", "jwks_url"], "msg": msg} in problem["errors"]
    assert await client_count(engine) == 0


@pytest.mark.parametrize(
    ("url", "msg"),
    [
        ("http://ehr.example/jwks.json", JWKS_HTTP_REFUSED),
        ("http://127.0.0.1:9000/jwks.json", JWKS_HTTP_REFUSED),  # not allowed here
        ("https://user:secret@ehr.example/jwks.json", None),  # the schema's pattern
        ("ftp://ehr.example/jwks.json", None),
        ("https://ehr.example:70000/jwks.json", None),
        ("/jwks.json", None),
    ],
)
async def test_a_key_set_url_follows_the_outbound_url_rule(
    admin: httpx.AsyncClient, engine: AsyncEngine, url: str, msg: str | None
) -> None:
    response = await admin.post(CLIENTS, json=url_body(jwks_url=url))
    problem = assert_problem(response, 422, loc=["body", "jwks_url"])
    if msg is not None:
        assert {"loc": ["body", "jwks_url"], "msg": msg} in problem["errors"]
    assert "secret" not in str(problem)
    assert await client_count(engine) == 0


async def test_http_hosts_allowed_for_webhooks_are_not_allowed_for_key_sets(
    settings: Settings, issue_token: Issue
) -> None:
    """A key set over plain http lets anyone on the path sign as the client: its hosts are a
    setting of their own (OUTCOMES_OAUTH_JWKS_ALLOWED_HOSTS), not the webhooks'."""
    url = "http://127.0.0.1:9000/jwks.json"
    token = await issue_token("admin")
    async with (
        running(settings, webhook_allowed_hosts="127.0.0.1") as app,
        client_of(app, token) as admin,
    ):
        refused = await admin.post(CLIENTS, json=url_body(jwks_url=url))
        assert_problem(refused, 422, loc=["body", "jwks_url"])
    async with (
        running(settings, oauth_jwks_allowed_hosts="127.0.0.1") as app,
        client_of(app, token) as admin,
    ):
        accepted = await admin.post(CLIENTS, json=url_body(jwks_url=url))
        assert accepted.status_code == 201, accepted.text
