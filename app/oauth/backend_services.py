"""SMART Backend Services: `grant_type=client_credentials`, the client authenticated by a JWT
it signed with a registered key (SMART App Launch 2.x, "Backend Services" and "Client
Authentication: Asymmetric"; RFC 7523 §3).

The assertion is read and verified by PyJWT with the client's key its `kid` header names:
`alg` RS384 or ES384, of the key's type; `iss` = `sub` = a registered, unrevoked client;
`aud` = this token URL; `exp` required, not past and at most five minutes ahead; `jti`
required and never seen before for this client. Clocks may differ by up to CLOCK_SKEW.

The client's keys are those registered with it, or the key set at its registered `jwks_url`
(fetched and kept a while: app/oauth/key_sets.py). A `jku` header must be that URL exactly,
as SMART's "Signature Verification" says ("If the jku header is not whitelisted, the
signature verification fails"): a client registered with its keys has no URL to match.

The client is looked up, and its key set fetched, outside the request's transaction: on
SQLite that transaction holds the write lock, which no fetch from another host may hold. It is
looked up again in the transaction that records the jti, so a client revoked meanwhile gets
no token.

Refusals follow the specification: a request missing or misnaming its assertion is an
`invalid_request`; any failure to authenticate the client (unknown or revoked client, unknown
key, wrong algorithm, bad signature, wrong `aud`, expired, too long-lived, replayed) is an
`invalid_client` (401), as "Client Authentication: Asymmetric" requires ("the server SHALL
respond with an invalid_client error"); a scope that is missing, malformed, names a type this
server has not, or leaves nothing once cut to the registration is an `invalid_scope`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from app.auth import scopes
from app.auth.principal import Principal
from app.auth.service import TokenService
from app.auth.state import auth_state
from app.core.db import utcnow
from app.core.state import app_state
from app.oauth.errors import OAuthError
from app.oauth.grants import TokenRequest
from app.oauth.jwks import ALGORITHMS, signing_key
from app.oauth.key_sets import KeySetUnavailable
from app.oauth.models import OAuthClient
from app.oauth.repository import ClientRepository
from app.oauth.service import ClientService
from app.oauth.state import oauth_state

GRANT_TYPE = "client_credentials"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = timedelta(minutes=5)  # SMART: exp "no more than five minutes" ahead
# Clocks differ: an assertion is still taken this long after its exp (and up to 5 minutes and
# this far ahead), and its jti is kept as long.
CLOCK_SKEW = timedelta(seconds=60)
MAX_JTI_LENGTH = 255  # the column's size
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "jti"]


NO_CLIENT = "No registered client has this client_id, or it was revoked."


def _unauthenticated(description: str) -> OAuthError:
    return OAuthError("invalid_client", description)


async def client_credentials(request: TokenRequest) -> dict[str, Any]:
    """An access token for a registered client, bounded by its role and by the scopes it asked
    for cut down to those it was registered with."""
    assertion_type = request.form.get("client_assertion_type")
    if not assertion_type:
        raise OAuthError("invalid_request", f"`client_assertion_type` ({JWT_BEARER}) is required.")
    if assertion_type != JWT_BEARER:
        raise OAuthError("invalid_request", f"`client_assertion_type` must be {JWT_BEARER}.")
    assertion = request.require("client_assertion")
    service = ClientService(ClientRepository(request.session))
    now = utcnow()
    client = await _authenticate(request, service, assertion, now)

    asked = request.form.get("scope", "").strip()
    if not asked:
        raise OAuthError("invalid_scope", "`scope` is required (for example `system/*.rs`).")
    try:
        granted = scopes.narrow(asked, client.scope)
    except scopes.InvalidScope as exc:
        raise OAuthError("invalid_scope", f"{exc}.") from exc

    settings = app_state(request.request).settings
    lifetime = timedelta(seconds=settings.oauth_access_token_seconds)
    tokens = TokenService(request.session, auth_state(request.request).token_cache)
    issued = await tokens.issue_scoped(
        role=client.role, scope=granted, lifetime=lifetime, client_id=client.id
    )
    row = issued.row
    request.access.principal = Principal(
        row.id, row.role, None, row.expires_at, granted, client.id, None
    )
    request.access.outcome = "allowed"
    return {
        "access_token": issued.token,
        "token_type": "bearer",
        "expires_in": settings.oauth_access_token_seconds,
        "scope": granted,
    }


async def _authenticate(
    request: TokenRequest, service: ClientService, assertion: str, now: datetime
) -> OAuthClient:
    """The client the assertion authenticates, its jti recorded; else `invalid_client`."""
    try:
        header = jwt.get_unverified_header(assertion)
        # Read unverified only to find the client and its keys; verified below.
        claimed = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise _unauthenticated("`client_assertion` is not a signed JWT.") from exc
    alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise _unauthenticated("The assertion's `alg` must be RS384 or ES384.")
    if typ is not None and str(typ).upper() != "JWT":
        raise _unauthenticated("The assertion's `typ` must be JWT.")
    if not isinstance(kid, str) or not kid:
        raise _unauthenticated("The assertion's header must name its key (`kid`).")
    issuer = claimed.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise _unauthenticated("The assertion must carry `iss`, the client_id.")
    if claimed.get("sub") != issuer:
        raise _unauthenticated("The assertion's `sub` must be its `iss`, the client_id.")
    named = request.form.get("client_id")
    if named is not None and named != issuer:
        raise _unauthenticated("`client_id` is not the assertion's `iss`.")
    client_id = _uuid_or_none(issuer)
    client = await _active_client(request, client_id) if client_id is not None else None
    if client is None:
        raise _unauthenticated(NO_CLIENT)
    request.access.resource_id = str(client.id)
    key = await _client_key(request, client, header, kid, alg)
    try:
        claims = jwt.decode(
            assertion,
            key,
            algorithms=[alg],
            audience=request.token_url,
            issuer=issuer,
            leeway=CLOCK_SKEW,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.InvalidSignatureError as exc:
        raise _unauthenticated("The assertion's signature does not verify.") from exc
    except jwt.ExpiredSignatureError as exc:
        raise _unauthenticated("The assertion has expired (`exp`).") from exc
    except jwt.InvalidAudienceError as exc:
        raise _unauthenticated(f"The assertion's `aud` must be {request.token_url}.") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise _unauthenticated(f"The assertion must carry `{exc.claim}`.") from exc
    except jwt.PyJWTError as exc:  # a claim of the wrong type, `nbf` or `iat` ahead, ...
        raise _unauthenticated(f"The assertion is not valid: {exc}.") from exc
    # PyJWT has checked that exp is a whole number, not past: compared as one, so that no
    # number is too large for a datetime.
    if claims["exp"] > (now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW).timestamp():
        raise _unauthenticated("The assertion's `exp` is more than 5 minutes ahead.")
    expires_at = datetime.fromtimestamp(claims["exp"], UTC)
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise _unauthenticated("The assertion's `jti` must be a string of 1 to 255 characters.")
    if await service.active(client.id) is None:  # revoked while its key set was fetched
        raise _unauthenticated(NO_CLIENT)
    await service.repo.forget_jtis_before(now - CLOCK_SKEW)
    if not await service.repo.take_jti(client.id, jti, expires_at):
        raise _unauthenticated("This assertion was used before (`jti`): sign a new one.")
    return client


async def _active_client(request: TokenRequest, client_id: uuid.UUID) -> OAuthClient | None:
    """The client, unless it is unknown or revoked: read outside the request's transaction."""
    async with app_state(request.request).read_sessionmaker() as reader:
        return await ClientService(ClientRepository(reader)).active(client_id)


async def _client_key(
    request: TokenRequest, client: OAuthClient, header: dict[str, Any], kid: str, alg: str
) -> jwt.PyJWK:
    """The key of the client's that verifies the assertion: the one its `kid` names among
    the registered keys, or in the key set at the registered URL."""
    jku = header.get("jku")
    if client.jwks_url is None:
        if jku is not None:
            raise _unauthenticated(
                "The assertion names a key set URL (`jku`), but the client was registered "
                "with its keys, not a jwks_url."
            )
        key = signing_key(client.jwks or {}, kid, alg)
        if key is None:
            raise _unauthenticated(f"The client has no registered {alg} key with this `kid`.")
        return key
    if jku is not None and jku != client.jwks_url:
        raise _unauthenticated("The assertion's `jku` is not the client's registered jwks_url.")
    key_sets = oauth_state(request.request).key_sets
    try:
        return await key_sets.signing_key(client.id, client.jwks_url, kid, alg)
    except KeySetUnavailable as exc:
        raise _unauthenticated(str(exc)) from None


def _uuid_or_none(raw: str) -> uuid.UUID | None:
    """The client_id as registered: a UUID in its canonical form, nothing else."""
    try:
        client_id = uuid.UUID(raw)
    except ValueError:
        return None
    return client_id if str(client_id) == raw else None
