"""Real keys and real client assertions for the OAuth tests: keys made with `cryptography`
(RSA 2048 for RS384, EC P-384 for ES384), assertions signed with PyJWT, exactly as a SMART
Backend Services client would."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.factories import API

TOKEN_PATH = "/oauth/token"
TOKEN_URL = f"http://test{TOKEN_PATH}"  # in-process clients' base URL is http://test
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@cache
def _rsa_key(name: str, bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@cache
def _ec_key(name: str, curve: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1() if curve == "P-384" else ec.SECP256R1())


@dataclass(frozen=True)
class Signer:
    """A client's key pair: its public JWK to register, and assertions signed with it."""

    kid: str
    alg: str
    key: PrivateKey

    def jwk(self, **members: Any) -> dict[str, Any]:
        public = self.key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk: dict[str, Any] = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        return jwk | {"kid": self.kid} | members

    def private_jwk(self) -> dict[str, Any]:
        """What a careless client would register: its private key."""
        if isinstance(self.key, rsa.RSAPrivateKey):
            jwk = RSAAlgorithm.to_jwk(self.key, as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(self.key, as_dict=True)
        return jwk | {"kid": self.kid}

    def assertion(
        self,
        client_id: str,
        *,
        aud: str = TOKEN_URL,
        exp_in: float = 240,
        alg: str | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A client assertion (iss = sub = client_id, aud, exp, a new jti); ``claims`` and
        ``headers`` override or, as None, remove a claim or a header."""
        body: dict[str, Any] = {
            "iss": client_id,
            "sub": client_id,
            "aud": aud,
            "exp": int(time.time() + exp_in),
            "jti": str(uuid.uuid4()),
        }
        for name, value in claims.items():
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value
        header = {"kid": self.kid} | (headers or {})
        header = {name: value for name, value in header.items() if value is not None}
        return jwt.encode(body, self.key, algorithm=alg or self.alg, headers=header)


def rsa_signer(kid: str = "rsa-1", bits: int = 2048) -> Signer:
    return Signer(kid, "RS384", _rsa_key(kid, bits))


def ec_signer(kid: str = "ec-1", curve: str = "P-384") -> Signer:
    return Signer(kid, "ES384", _ec_key(kid, curve))


def client_body(
    *signers: Signer, role: str = "integration", scope: str = "system/*.rs", name: str = "EHR"
) -> dict[str, Any]:
    return {
        "name": name,
        "role": role,
        "scope": scope,
        "jwks": {"keys": [signer.jwk() for signer in signers]},
    }


async def register(
    admin: httpx.AsyncClient,
    *signers: Signer,
    role: str = "integration",
    scope: str = "system/*.rs",
    name: str = "EHR",
) -> str:
    """Register a client with these keys: its client_id."""
    response = await admin.post(
        f"{API}/clients", json=client_body(*signers, role=role, scope=scope, name=name)
    )
    assert response.status_code == 201, response.text
    client_id: str = response.json()["client_id"]
    return client_id


async def request_token(client: httpx.AsyncClient, **form: str) -> httpx.Response:
    """POST /oauth/token with ``form`` as application/x-www-form-urlencoded."""
    return await client.post(TOKEN_PATH, data=form)


def credentials(assertion: str, scope: str | None = "system/*.rs") -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
    }
    return form | ({"scope": scope} if scope is not None else {})


async def get_token(
    client: httpx.AsyncClient, client_id: str, signer: Signer, scope: str = "system/*.rs"
) -> dict[str, Any]:
    """A token for a registered client, as SMART Backend Services gets one."""
    response = await request_token(client, **credentials(signer.assertion(client_id), scope))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def key_set(*signers: Signer) -> dict[str, Any]:
    """The JWK Set a client publishes at its jwks_url: its public keys."""
    return {"keys": [signer.jwk() for signer in signers]}


async def register_url(
    admin: httpx.AsyncClient, jwks_url: str, *, scope: str = "system/*.rs", name: str = "EHR"
) -> str:
    """Register a client by the URL of its key set: its client_id."""
    body = {"name": name, "role": "integration", "scope": scope, "jwks_url": jwks_url}
    response = await admin.post(f"{API}/clients", json=body)
    assert response.status_code == 201, response.text
    client_id: str = response.json()["client_id"]
    return client_id
