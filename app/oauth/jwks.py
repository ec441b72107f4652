"""A client's public keys: what registration checks beyond the schema, and which key verifies
an assertion (SMART "Client Authentication: Asymmetric", "Signature Verification").

Keys are read by PyJWT (`PyJWK`, on `cryptography`): nothing here decodes key material or
checks a signature by hand.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from jwt import PyJWK, PyJWTError

from app.core.errors import field_error

# A signature algorithm and the key type it needs (SMART: RS384 and ES384).
ALGORITHMS: Mapping[str, str] = {"RS384": "RSA", "ES384": "EC"}
KEY_ALGORITHM = {kty: alg for alg, kty in ALGORITHMS.items()}
RSA_MIN_BITS = 2048

# What registration says about a key the schema admits but that is not one (the JSON Schema
# states the shapes; these are the rules no schema can state).
NOT_AN_RSA_KEY = "with e, is not an RSA public key (e must be odd, at least 3, less than n)"
RSA_TOO_SHORT = f"is a modulus of fewer than {RSA_MIN_BITS} bits (leading zero bytes?)"
NOT_ON_THE_CURVE = "with x, is not a point on P-384"
KID_TAKEN = "is the kid of another key in the set"


REGISTERED = ("body", "jwks", "keys")  # where a registration's keys are


def problems(
    keys: Sequence[Mapping[str, Any]], under: Sequence[str] = REGISTERED
) -> list[dict[str, Any]]:
    """The errors (as field errors under ``under``: a registration's `body.jwks.keys`, or a
    fetched key set's `keys`) of a key set whose members have the shapes the schema requires
    (app/oauth/schemas.py, Jwks); none for a set of real public keys with unique kids."""
    return list(_problems(keys, under))


def _problems(keys: Sequence[Mapping[str, Any]], under: Sequence[str]) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    for index, jwk in enumerate(keys):
        loc: list[str | int] = [*under, index]
        if jwk["kid"] in seen:
            yield field_error([*loc, "kid"], KID_TAKEN)
        seen.add(jwk["kid"])
        kty = jwk["kty"]
        try:
            key = PyJWK(dict(jwk), algorithm=KEY_ALGORITHM[kty]).key
        except (PyJWTError, ValueError):
            if kty == "RSA":
                yield field_error([*loc, "n"], NOT_AN_RSA_KEY)
            else:
                yield field_error([*loc, "y"], NOT_ON_THE_CURVE)
            continue
        if kty == "RSA" and key.key_size < RSA_MIN_BITS:
            yield field_error([*loc, "n"], RSA_TOO_SHORT)


def signing_key(jwks: Mapping[str, Any], kid: str, alg: str) -> PyJWK | None:
    """The one registered key named ``kid`` whose type fits ``alg`` (and whose own `alg`, if
    it names one, is ``alg``); None when there is none or more than one, as the SMART
    algorithm says."""
    kty = ALGORITHMS.get(alg)
    candidates = [
        jwk
        for jwk in jwks.get("keys", [])
        if jwk.get("kid") == kid and jwk.get("kty") == kty and jwk.get("alg", alg) == alg
    ]
    if len(candidates) != 1:
        return None
    try:
        return PyJWK(dict(candidates[0]), algorithm=alg)
    except (PyJWTError, ValueError):  # registration checked it: a key stored otherwise fails
        return None
