"""The key sets of clients registered with a `jwks_url` (SMART App Launch 2, "Client
Authentication: Asymmetric": the client publishes its public keys as a JWK Set at a URL, and
rotates them there), fetched when an assertion needs them and kept a while in each process.

- A fetch is a GET with httpx: no redirect is followed (the URL checked at registration is
  the one called), it gets OUTCOMES_OAUTH_JWKS_TIMEOUT_SECONDS in all, and at most MAX_BYTES
  of body. The answer must be a 200 with a JSON JWK Set that registration would take inline:
  the same schema (1 to 10 public keys, RSA for RS384 or EC P-384 for ES384, no private part)
  and the same checks (real keys, unique kids: app/oauth/jwks.py). Anything else, and any
  failure to reach it, is a KeySetUnavailable saying what (the token endpoint answers it as
  `invalid_client`).
- A set is kept for its answer's Cache-Control max-age (`no-store`, `no-cache`: 0), or
  OUTCOMES_OAUTH_JWKS_CACHE_SECONDS without one; never less than the refetch interval below,
  never more than MAX_KEEP_SECONDS: a key the client removes is refused within the hour.
- An assertion naming a kid the kept set lacks fetches the set again at once: a key rotated in
  at the client works on its first use. But no client's set is fetched more often than every
  OUTCOMES_OAUTH_JWKS_REFETCH_SECONDS, whatever comes (unknown kids, failed fetches): a flood
  of assertions cannot become a flood of requests to the client's host.
- A fetch that fails leaves a set that is still fresh in place: only the new kid is refused.

Each process keeps its own sets (with several workers, each fetches for itself): they are
only a cache of what the URL serves; the database holds the URL. Requests of one process for
one client that need a fetch at the same time wait for one fetch.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx
from jwt import PyJWK
from pydantic import ValidationError

from app.core.config import Settings
from app.core.errors import describe, validation_errors
from app.oauth import jwks
from app.oauth.schemas import PRIVATE_PART, Jwks

MAX_BYTES = 64 * 1024  # ten 16384-bit RSA keys are about 30 KB
MAX_KEEP_SECONDS = 3600.0
ACCEPT = "application/jwk-set+json, application/json"


class KeySetUnavailable(Exception):
    """No key for the assertion could be had from the client's jwks_url: the message says why,
    in a sentence (an `invalid_client`'s `error_description`)."""


@dataclass(frozen=True, slots=True)
class _Kept:
    url: str
    jwks: Mapping[str, Any] | None  # None: no set to use (the last fetch failed)
    problem: str  # why the last fetch failed; "" when it did not
    fetched_at: float  # when the set was last fetched, or tried (the clock's time)
    fresh_until: float


class KeySets:
    def __init__(
        self,
        *,
        timeout_seconds: float,
        cache_seconds: float,
        refetch_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.cache_seconds = cache_seconds
        self.refetch_seconds = refetch_seconds
        self._clock = clock
        self._kept: dict[uuid.UUID, _Kept] = {}
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        # Made at the first fetch (its TLS context takes tens of milliseconds): a deployment
        # without jwks_url clients never makes it.
        self._http: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KeySets:
        return cls(
            timeout_seconds=settings.oauth_jwks_timeout_seconds,
            cache_seconds=settings.oauth_jwks_cache_seconds,
            refetch_seconds=settings.oauth_jwks_refetch_seconds,
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                follow_redirects=False,
                timeout=self.timeout_seconds,
                headers={"accept": ACCEPT, "user-agent": "outcomes-jwks/1"},
                limits=httpx.Limits(max_connections=20),
            )
        return self._http

    async def signing_key(self, client_id: uuid.UUID, url: str, kid: str, alg: str) -> PyJWK:
        """The one key of the client's set named ``kid`` whose type fits ``alg`` (as
        jwks.signing_key chooses it), fetching the set when none is kept, it is stale, or it
        lacks the kid; else KeySetUnavailable."""
        key = self._kept_key(client_id, url, kid, alg)
        if key is not None:
            return key
        async with self._locks.setdefault(client_id, asyncio.Lock()):
            # Another request may have fetched the set while this one waited.
            key = self._kept_key(client_id, url, kid, alg)
            if key is not None:
                return key
            kept = self._kept.get(client_id)
            if kept is not None and kept.url != url:
                kept = None  # the URL is not the one the set came from
            if kept is None or self._clock() - kept.fetched_at >= self.refetch_seconds:
                kept = self._kept[client_id] = await self._fetch(url, kept)
                # Just fetched (or still fresh): used by this request however short its life.
                key = jwks.signing_key(kept.jwks, kid, alg) if kept.jwks is not None else None
                if key is not None:
                    return key
            raise KeySetUnavailable(self._why(kept, alg))

    def _kept_key(self, client_id: uuid.UUID, url: str, kid: str, alg: str) -> PyJWK | None:
        kept = self._kept.get(client_id)
        if kept is None or kept.url != url or kept.jwks is None:
            return None
        if self._clock() >= kept.fresh_until:
            return None
        return jwks.signing_key(kept.jwks, kid, alg)

    def _why(self, kept: _Kept, alg: str) -> str:
        age = max(0, round(self._clock() - kept.fetched_at))
        again = f"fetched {age} s ago; fetched again at most every {self.refetch_seconds:g} s"
        where = "The key set at the client's jwks_url"
        if kept.problem:
            return f"{where} could not be used: {kept.problem} ({again})."
        return f"{where} has no {alg} key with this `kid` ({again})."

    async def _fetch(self, url: str, previous: _Kept | None) -> _Kept:
        try:
            key_set, max_age = await self._download(url)
        except KeySetUnavailable as exc:
            now = self._clock()
            if previous is not None and previous.jwks is not None and now < previous.fresh_until:
                return replace(previous, problem=str(exc), fetched_at=now)
            return _Kept(url, None, str(exc), now, now)
        now = self._clock()
        keep = self.cache_seconds if max_age is None else max_age
        keep = min(MAX_KEEP_SECONDS, max(self.refetch_seconds, keep))
        return _Kept(url, key_set, "", now, now + keep)

    async def _download(self, url: str) -> tuple[dict[str, Any], float | None]:
        """The key set at ``url`` and its answer's max-age (None: not given)."""
        body = bytearray()
        try:
            # The whole fetch, not each read (httpx's timeout): a host that trickles its answer
            # must not hold the token request longer.
            async with (
                asyncio.timeout(self.timeout_seconds),
                self._client().stream("GET", url) as response,
            ):
                status = response.status_code
                if status != 200:
                    redirect = " (redirects are not followed)" if 300 <= status < 400 else ""
                    raise KeySetUnavailable(f"it answered HTTP {status}{redirect}")
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise KeySetUnavailable(f"it is larger than {MAX_BYTES // 1024} KiB")
                cache_control = response.headers.get("cache-control", "")
        except (httpx.TimeoutException, TimeoutError):
            raise KeySetUnavailable(
                f"it did not answer within {self.timeout_seconds:g} s"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise KeySetUnavailable(f"it could not be reached ({type(exc).__name__})") from None
        return _key_set(bytes(body)), _max_age(cache_control)


def _key_set(body: bytes) -> dict[str, Any]:
    """A fetched JWK Set's keys, held to the rules of a registration's (app/oauth/jwks.py)."""
    try:
        document = json.loads(body)
    except ValueError:
        raise KeySetUnavailable("it is not JSON") from None
    if not isinstance(document, dict) or "keys" not in document:
        raise KeySetUnavailable('it is not a JWK Set (a JSON object with "keys")')
    try:
        # The set's other members (RFC 7517 §5 allows them) are not the keys': left out.
        key_set = Jwks.model_validate({"keys": document["keys"]})
    except ValidationError as exc:
        errors = validation_errors(exc.errors(include_input=False))
        # A private key published is the error to name first: the client must replace it.
        errors.sort(key=lambda error: error["msg"] != PRIVATE_PART)
        raise KeySetUnavailable(f"a key is not acceptable: {describe(errors)}") from None
    keys = key_set.model_dump(exclude_none=True)["keys"]
    errors = jwks.problems(keys, under=("keys",))
    if errors:
        raise KeySetUnavailable(f"a key is not acceptable: {describe(errors)}")
    return {"keys": keys}


def _max_age(cache_control: str) -> float | None:
    """Seconds a response may be kept, by its Cache-Control: `no-store` and `no-cache` are 0;
    None when it says nothing of it (or nothing readable)."""
    directives: dict[str, str] = {}
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        directives[name.strip().lower()] = value.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    raw = directives.get("max-age", "")
    return float(raw) if raw.isdigit() else None
