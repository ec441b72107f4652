"""Enrolment codes and refresh tokens as secrets: making them, reading what a person typed, and
hashing them. No database, no web code.

A code is 12 characters of Crockford's base32 (digits and uppercase letters without I, L, O
and U), shown in three groups: `K7QM-3XPA-9D2H`. The first group is the code's public part,
its `lookup`: it names the code, so that a wrong guess at the rest counts against the code it
names. The other 8 characters are the secret: 40 random bits, of which a guesser has 5 tries
per code before the code burns. People copy codes by hand, so what they type is read
leniently: any case, with or without dashes or spaces, and O, I and L read as 0, 1 and 1.

Only a slow hash of the whole code is stored (scrypt, a salt of its own per code): a copy of
the database does not give the codes away cheaply, although they are short. A refresh token
is 256 random bits, so a fast hash (SHA-256) is enough for it, as for access tokens
(app/auth/tokens.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: 5 bits a character
LOOKUP_LENGTH = 4  # the public part: 20 bits, enough to name one of the live codes
SECRET_LENGTH = 8  # 40 bits
CODE_LENGTH = LOOKUP_LENGTH + SECRET_LENGTH
GROUP = 4
SECRET_BITS = SECRET_LENGTH * 5
# What a person may type for a character that looks like another (Crockford's decoding).
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SEPARATORS = str.maketrans("", "", "- \t")
_ALPHABET_SET = frozenset(ALPHABET)

# scrypt's cost: 16 MiB and some tens of milliseconds a hash. The parameters are stored with
# each hash, so they can change without invalidating the codes already given out.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
_HASH_BYTES = 32

REFRESH_PREFIX = "ort_"  # recognisable in a leaked-secret scan, like access tokens' otk_


def new_code() -> str:
    """A new code, canonical (12 characters, no dashes)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def grouped(code: str) -> str:
    """The canonical code as people read it: `K7QM-3XPA-9D2H`."""
    return "-".join(code[i : i + GROUP] for i in range(0, len(code), GROUP))


def canonical(typed: str) -> str | None:
    """The code a person typed, canonical; None when it cannot be a code."""
    if len(typed) > 4 * CODE_LENGTH:  # however spaced out, not a code
        return None
    code = typed.translate(_SEPARATORS).upper().translate(_READ_AS)
    if len(code) != CODE_LENGTH or not set(code) <= _ALPHABET_SET:
        return None
    return code


def lookup_of(code: str) -> str:
    return code[:LOOKUP_LENGTH]


def hash_code(code: str) -> str:
    """`scrypt$N$r$p$salt$hash` (base64): slow on purpose; run it off the event loop."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(code, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)]
    )


def verify_code(code: str, stored: str) -> bool:
    """Whether ``code`` is the one ``stored`` (a `hash_code` string) was made from."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(code, _unb64(salt), int(n), int(r), int(p))
        return hmac.compare_digest(actual, _unb64(digest))
    except ValueError:
        return False


# Verified when a guess names no live code, so that it takes as long as one that does: the
# answer's timing does not tell a guesser which public parts are in use.
DECOY_HASH = "$".join(
    ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), "AAAAAAAAAAAAAAAAAAAAAA", "A" * 43]
)


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)  # 256 bits


def _scrypt(code: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        code.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=_HASH_BYTES
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
