"""Opaque bearer tokens: 256 random bits, stored only as a SHA-256 digest.

A fast hash is right here: the secret is random and long, so there is nothing to brute-force
that a slow password hash would protect, and every request hashes its token.
"""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "otk_"  # recognisable in a leaked-secret scan


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
