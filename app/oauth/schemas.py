"""Registered clients (`/api/v1/clients`) and the SMART configuration document."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    ValidationInfo,
    field_validator,
)

from app.auth.scopes import MAX_SCOPE_LENGTH, check_registered, registered_scope_pattern
from app.core.outbound import OUTBOUND_URL_PATTERN
from app.core.schemas import RequestModel, ResponseModel
from app.oauth.models import OAuthClient

# base64url without padding (RFC 7515 §2): whole groups of 4, then 2 or 3 characters or none.
BASE64URL = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$"
RSA_MIN_BITS = 2048
# A 2048-bit modulus is 256 bytes: 342 characters; 16384 bits is 2731.
_MODULUS_CHARS = (342, 2731)
P384_COORDINATE = "^[A-Za-z0-9_-]{64}$"  # 48 bytes
PRIVATE_PART = "is a private key part: register the public key only"
MAX_KEYS = 10
ClientRole = Literal["integration", "dashboard"]


class _PublicJwk(RequestModel):
    """What every key of the set carries; the members of a private key are refused."""

    kid: str = Field(
        min_length=1,
        max_length=200,
        description="Unique within the set: a client assertion's `kid` header names its key.",
    )
    use: Literal["sig"] | None = None
    key_ops: list[Literal["verify"]] | None = None
    ext: StrictBool | None = None  # WebCrypto's exported keys carry it (a JSON boolean)
    d: None = Field(None, description="Never sent: a private key part.")

    @field_validator("d", "p", "q", "dp", "dq", "qi", "oth", mode="before", check_fields=False)
    @classmethod
    def _no_private_part(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(PRIVATE_PART)
        return value


class RsaJwk(_PublicJwk):
    kty: Literal["RSA"]
    alg: Literal["RS384"] | None = None
    n: str = Field(
        pattern=BASE64URL,
        min_length=_MODULUS_CHARS[0],
        max_length=_MODULUS_CHARS[1],
        description=f"The modulus (base64url): {RSA_MIN_BITS} bits or more.",
    )
    e: str = Field(pattern=BASE64URL, min_length=2, max_length=8, description="The exponent.")
    p: None = Field(None, description="Never sent: a private key part.")
    q: None = Field(None, description="Never sent: a private key part.")
    dp: None = Field(None, description="Never sent: a private key part.")
    dq: None = Field(None, description="Never sent: a private key part.")
    qi: None = Field(None, description="Never sent: a private key part.")
    oth: None = Field(None, description="Never sent: a private key part.")


class EcJwk(_PublicJwk):
    kty: Literal["EC"]
    alg: Literal["ES384"] | None = None
    crv: Literal["P-384"]
    x: str = Field(pattern=P384_COORDINATE, description="base64url, 48 bytes.")
    y: str = Field(pattern=P384_COORDINATE, description="base64url, 48 bytes.")


def _key_type(value: Any) -> str | None:
    kty = value.get("kty") if isinstance(value, dict) else getattr(value, "kty", None)
    return kty if kty in ("RSA", "EC") else None


# Chosen by `kty` (a callable discriminator: RequestModel's text check runs on every field).
Jwk = Annotated[
    Annotated[RsaJwk, Tag("RSA")] | Annotated[EcJwk, Tag("EC")],
    Discriminator(
        _key_type,
        custom_error_type="key_type",
        custom_error_message="kty must be RSA or EC",
    ),
]


class Jwks(RequestModel):
    keys: list[Jwk] = Field(
        min_length=1,
        max_length=MAX_KEYS,
        description="Public keys only: RSA of 2048 bits or more (RS384), or EC on P-384 "
        "(ES384); each with a `kid` unique in the set, and a real key (an EC point on the "
        "curve, an RSA exponent that is odd and less than the modulus).",
    )


KEY_SOURCE_MISSING = "jwks or jwks_url is required"
KEY_SOURCES_BOTH = "give jwks or jwks_url, not both"


def _one_key_source(schema: dict[str, Any]) -> None:
    """Exactly one of `jwks` and `jwks_url`, as the server reads them: a null is as absent."""
    schema["oneOf"] = [
        {"required": ["jwks"], "properties": {"jwks": {"type": "object"}}},
        {"required": ["jwks_url"], "properties": {"jwks_url": {"type": "string"}}},
    ]


class ClientCreate(RequestModel):
    model_config = ConfigDict(json_schema_extra=_one_key_source)

    name: str = Field(min_length=1, max_length=200)
    role: ClientRole = Field(
        description="Bounds what its tokens may do, with their scopes (docs/security.md)."
    )
    jwks: Jwks | None = Field(
        None, description="The client's public keys. Give these, or `jwks_url`, not both."
    )
    jwks_url: str | None = Field(
        None,
        max_length=2000,
        pattern=OUTBOUND_URL_PATTERN,
        # Run when absent too: it says whether one of the two was given.
        validate_default=True,
        description="Where the client publishes its public keys (a JWK Set, which it rotates "
        "keys in): `https`, or `http` to a host in OUTCOMES_OAUTH_JWKS_ALLOWED_HOSTS; fetched "
        "when an assertion needs it, without following redirects. Give this, or `jwks`, not "
        "both.",
        examples=["https://ehr.example/.well-known/jwks.json"],
    )
    scope: str = Field(
        max_length=MAX_SCOPE_LENGTH,
        # Declared for the schema; checked by _registered_scope, which says what is wrong.
        json_schema_extra={"pattern": registered_scope_pattern("system")},
        description="The most its tokens may be granted: space-separated SMART `system/` "
        "scopes of Patient, CarePlan, Procedure, Observation or `*`, v2 (`system/*.rs`) or "
        "v1 (`system/Observation.read`).",
        examples=["system/*.rs"],
    )

    @field_validator("jwks_url")
    @classmethod
    def _one_of_the_two(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "jwks" not in info.data:  # given, and refused: its own errors say why
            return value
        given = info.data["jwks"] is not None
        if value is None and not given:
            raise ValueError(KEY_SOURCE_MISSING)
        if value is not None and given:
            raise ValueError(KEY_SOURCES_BOTH)
        return value

    @field_validator("scope")
    @classmethod
    def _registered_scope(cls, value: str) -> str:
        check_registered(value, "system")  # InvalidScope is a ValueError: a 422 naming scope
        return value


class ClientRead(ResponseModel):
    client_id: uuid.UUID = Field(description="`iss` and `sub` of the client's assertions.")
    name: str
    role: ClientRole
    scope: str
    jwks: dict[str, Any] | None = Field(description="Its keys, as registered; or null.")
    jwks_url: str | None = Field(description="Where its keys are fetched from; or null.")
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: OAuthClient) -> ClientRead:
        return cls(
            client_id=row.id,
            name=row.name,
            role=cast(ClientRole, row.role),  # the table's CHECK holds it to ClientRole
            scope=row.scope,
            jwks=row.jwks,
            jwks_url=row.jwks_url,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )


class SmartConfiguration(ResponseModel):
    """`.well-known/smart-configuration` (SMART App Launch 2.x, "Conformance")."""

    token_endpoint: str
    grant_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    token_endpoint_auth_signing_alg_values_supported: list[str]
    scopes_supported: list[str]
    capabilities: list[str]
    code_challenge_methods_supported: list[str] = Field(
        description="Empty: this server has no authorization endpoint (no App Launch), so no PKCE."
    )
