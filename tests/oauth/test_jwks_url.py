"""Clients registered with a `jwks_url` (SMART Backend Services, "client-confidential-asymmetric"
with a JWK Set URL): the client publishes its public keys on a web server of its own and
rotates them there. Here that server is a real HTTP server on a loopback port, the keys are
made by `cryptography`, the assertions signed by PyJWT.

What is promised: a token for an assertion signed by a key published at the URL; a key rotated
in at the URL works on its first use, without registering again; the set is kept a while
(Cache-Control max-age, within bounds) and fetched at most once per refetch interval; a `jku`
other than the registered URL is refused, and never fetched; a host that is down, slow,
redirecting, or serving anything but a set of public keys of the kinds registration accepts is
an `invalid_client` 401 saying why, audited like every token request, never a 5xx."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit.models import AuditEvent
from app.core.config import Settings
from app.oauth.key_sets import MAX_BYTES, KeySets, KeySetUnavailable
from tests.oauth.support import (
    Signer,
    credentials,
    ec_signer,
    key_set,
    register,
    register_url,
    request_token,
    rsa_signer,
)
from tests.push.receiver import Received, Receiver, Reply, receiving
from tests.support import Issue, client_of, running

# An app that may fetch key sets over http from the loopback, and fetch a set again at once
# whenever an assertion names a kid it lacks (the interval has a test of its own).
LOOPBACK = {"oauth_jwks_allowed_hosts": "127.0.0.1", "oauth_jwks_refetch_seconds": 0}


@dataclass
class KeyHost:
    """A client's own web server, publishing its key set at ``url`` (what it serves can be
    changed at any time: a rotation, an outage, a mistake)."""

    published: dict[str, Any] | bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    receiver: Receiver | None = None

    async def answer(self, _request: Received) -> Reply:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        body = self.published
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        return Reply(self.status, body, {"Content-Type": "application/json"} | self.headers)

    @property
    def base(self) -> str:
        assert self.receiver is not None
        return f"http://127.0.0.1:{self.receiver.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/.well-known/jwks.json"

    def fetched(self) -> list[str]:
        """The paths asked for, in order."""
        assert self.receiver is not None
        return [request.path for request in self.receiver.arrivals]


@asynccontextmanager
async def key_host(*signers: Signer) -> AsyncIterator[KeyHost]:
    host = KeyHost(key_set(*signers))
    async with receiving(host.answer) as receiver:
        host.receiver = receiver
        yield host


@dataclass
class Smart:
    app: FastAPI
    admin: httpx.AsyncClient
    system: httpx.AsyncClient  # the client system, at /oauth/token (no bearer token)


@asynccontextmanager
async def smart_app(settings: Settings, issue: Issue, **overrides: Any) -> AsyncIterator[Smart]:
    async with running(settings, **(LOOPBACK | overrides)) as app:
        admin, system = client_of(app, await issue("admin")), client_of(app)
        async with admin, system:
            yield Smart(app, admin, system)


@pytest.fixture
async def smart(settings: Settings, issue_token: Issue) -> AsyncIterator[Smart]:
    async with smart_app(settings, issue_token) as served:
        yield served


async def token_for(smart: Smart, client_id: str, signer: Signer, **headers: Any) -> httpx.Response:
    assertion = signer.assertion(client_id, headers=headers or None)
    return await request_token(smart.system, **credentials(assertion))


def refused(response: httpx.Response) -> str:
    """The response is an `invalid_client` 401: its description."""
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"] == "invalid_client"
    assert response.headers["cache-control"] == "no-store"
    description: str = body["error_description"]
    return description


async def audit_row(engine: AsyncEngine, response: httpx.Response) -> Any:
    async with engine.connect() as conn:
        stmt = select(
            AuditEvent.action,
            AuditEvent.resource_type,
            AuditEvent.resource_id,
            AuditEvent.outcome,
            AuditEvent.status,
        ).where(AuditEvent.request_id == response.headers["x-request-id"])
        return (await conn.execute(stmt)).one()


# --- tokens for keys published at the URL -----------------------------------------------------


@pytest.mark.parametrize("signer", [rsa_signer(), ec_signer()], ids=["RS384", "ES384"])
async def test_a_client_registered_by_url_gets_a_token_for_a_key_published_there(
    smart: Smart, engine: AsyncEngine, signer: Signer
) -> None:
    async with key_host(signer) as host:
        registered = await smart.admin.post(
            "/api/v1/clients",
            json={
                "name": "EHR",
                "role": "integration",
                "scope": "system/*.rs",
                "jwks_url": host.url,
            },
        )
        assert registered.status_code == 201, registered.text
        client = registered.json()
        assert (client["jwks"], client["jwks_url"]) == (None, host.url)
        assert host.fetched() == []  # registration fetches nothing: the set is the client's

        response = await token_for(smart, client["client_id"], signer)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["token_type"], body["scope"]) == ("bearer", "system/*.rs")
        async with client_of(smart.app, body["access_token"]) as ehr:
            reading = await ehr.get("/fhir/R4/Patient")
        assert reading.status_code == 200, reading.text
        assert host.fetched() == ["/.well-known/jwks.json"]
        assert host.receiver is not None
        assert "application/jwk-set+json" in host.receiver.arrivals[0].headers["accept"]

        # the set is kept: a second assertion needs no fetch
        again = await token_for(smart, client["client_id"], signer)
        assert again.status_code == 200, again.text
        assert len(host.fetched()) == 1
    row = await audit_row(engine, response)
    assert tuple(row) == ("create", "token", client["client_id"], "allowed", 200)


async def test_a_key_rotated_in_at_the_url_works_at_once_without_registering_again(
    smart: Smart,
) -> None:
    old, new = ec_signer("2026-old"), rsa_signer("2026-new")
    async with key_host(old) as host:
        client_id = await register_url(smart.admin, host.url)
        assert (await token_for(smart, client_id, old)).status_code == 200

        # the client publishes its new key beside the old one, then signs with it
        host.published = key_set(old, new)
        response = await token_for(smart, client_id, new)
        assert response.status_code == 200, response.text
        assert len(host.fetched()) == 2  # the unknown kid fetched the set again
        assert (await token_for(smart, client_id, old)).status_code == 200
        assert (await token_for(smart, client_id, new)).status_code == 200
        assert len(host.fetched()) == 2


async def test_a_key_withdrawn_at_the_url_is_refused_once_the_kept_set_is_stale(
    smart: Smart,
) -> None:
    old, new = ec_signer("2026-old"), rsa_signer("2026-new")
    async with key_host(old, new) as host:
        host.headers = {"Cache-Control": "no-store"}  # kept no longer than the refetch interval
        client_id = await register_url(smart.admin, host.url)
        assert (await token_for(smart, client_id, old)).status_code == 200
        host.published = key_set(new)
        description = refused(await token_for(smart, client_id, old))
        assert "has no ES384 key with this `kid`" in description
        assert (await token_for(smart, client_id, new)).status_code == 200


async def test_a_key_set_is_fetched_at_most_once_per_refetch_interval(
    settings: Settings, issue_token: Issue
) -> None:
    signer, unknown = ec_signer(), ec_signer("not-published")
    async with (
        smart_app(settings, issue_token, oauth_jwks_refetch_seconds=30) as smart,
        key_host(signer) as host,
    ):
        client_id = await register_url(smart.admin, host.url)
        assert (await token_for(smart, client_id, signer)).status_code == 200
        # assertions naming a kid the set lacks: refused without asking the host again
        for _ in range(3):
            description = refused(await token_for(smart, client_id, unknown))
            assert "fetched again at most every 30 s" in description
        assert len(host.fetched()) == 1


async def test_each_process_keeps_its_own_copy_of_a_key_set(
    settings: Settings, issue_token: Issue
) -> None:
    """Two workers: each fetches the set for itself, and each issues tokens with it."""
    signer = rsa_signer()
    async with (
        key_host(signer) as host,
        smart_app(settings, issue_token) as first,
        smart_app(settings, issue_token) as second,
    ):
        client_id = await register_url(first.admin, host.url)
        for worker in (first, second, first, second):
            assert (await token_for(worker, client_id, signer)).status_code == 200
        assert len(host.fetched()) == 2


# --- jku --------------------------------------------------------------------------------------


async def test_a_jku_must_be_the_registered_url_and_another_is_never_fetched(
    smart: Smart, engine: AsyncEngine
) -> None:
    signer = ec_signer()
    async with key_host(signer) as host, key_host(signer) as elsewhere:
        client_id = await register_url(smart.admin, host.url)
        ok = await token_for(smart, client_id, signer, jku=host.url)
        assert ok.status_code == 200, ok.text

        for other in (elsewhere.url, host.url + "?v=2", host.base + "/.well-known/JWKS.json"):
            response = await token_for(smart, client_id, signer, jku=other)
            assert "`jku` is not the client's registered jwks_url" in refused(response)
        assert elsewhere.fetched() == []
        row = await audit_row(engine, response)
        assert tuple(row) == ("create", "token", client_id, "denied", 401)


async def test_a_jku_from_a_client_registered_with_its_keys_is_refused(smart: Smart) -> None:
    signer = ec_signer()
    client_id = await register(smart.admin, signer)
    async with key_host(signer) as host:
        response = await token_for(smart, client_id, signer, jku=host.url)
        assert "registered with its keys, not a jwks_url" in refused(response)
        assert host.fetched() == []
    assert (await token_for(smart, client_id, signer)).status_code == 200


# --- a host that does not serve a usable key set ----------------------------------------------


async def test_a_host_that_is_down_is_invalid_client_and_audited(
    smart: Smart, engine: AsyncEngine
) -> None:
    signer = ec_signer()
    async with key_host(signer) as host:
        url = host.url
    client_id = await register_url(smart.admin, url)  # the server has stopped
    response = await token_for(smart, client_id, signer)
    assert "could not be used: it could not be reached (ConnectError)" in refused(response)
    row = await audit_row(engine, response)
    assert tuple(row) == ("create", "token", client_id, "denied", 401)


async def test_a_key_set_holding_a_private_key_is_refused(smart: Smart) -> None:
    signer = rsa_signer()
    async with key_host(signer) as host:
        host.published = {"keys": [signer.private_jwk()]}
        client_id = await register_url(smart.admin, host.url)
        description = refused(await token_for(smart, client_id, signer))
        assert "keys.0.RSA.d: is a private key part" in description
        # the private key is never echoed
        assert signer.private_jwk()["d"] not in description


async def test_a_redirect_is_not_followed(smart: Smart) -> None:
    signer = ec_signer()
    async with key_host(signer) as host:
        client_id = await register_url(smart.admin, host.base + "/moved")
        host.status = 302
        host.headers = {"Location": host.url}  # where the set really is
        description = refused(await token_for(smart, client_id, signer))
        assert "it answered HTTP 302 (redirects are not followed)" in description
        assert host.fetched() == ["/moved"]


def _unusable() -> list[tuple[str, dict[str, Any], str]]:
    """(case, what the host does, what the description says)."""
    signer = ec_signer()
    published = key_set(signer)
    big = json.dumps(published | {"padding": "x" * MAX_BYTES}).encode()
    return [
        ("not found", {"status": 404}, "it answered HTTP 404"),
        ("server error", {"status": 500}, "it answered HTTP 500"),
        ("not JSON", {"published": b"<html>keys</html>"}, "it is not JSON"),
        ("JSON, not a set", {"published": {"kty": "EC"}}, '(a JSON object with "keys")'),
        ("a list", {"published": b"[]"}, "not a JWK Set"),
        ("no keys", {"published": {"keys": []}}, "keys: List should have at least 1 item"),
        ("P-256 key", {"published": key_set(ec_signer("p256", "P-256"))}, "keys.0.EC.crv"),
        ("kid twice", {"published": {"keys": [signer.jwk(), signer.jwk()]}},
         "keys.1.kid: is the kid of another key in the set"),
        ("too large", {"published": big}, f"larger than {MAX_BYTES // 1024} KiB"),
        ("too slow", {"delay_s": 6.0}, "did not answer within 3 s"),
    ]  # fmt: skip


UNUSABLE = _unusable()


@pytest.mark.parametrize(
    ("serves", "says"), [case[1:] for case in UNUSABLE], ids=[case[0] for case in UNUSABLE]
)
async def test_an_unusable_answer_is_invalid_client_saying_why(
    settings: Settings, issue_token: Issue, serves: dict[str, Any], says: str
) -> None:
    signer = ec_signer()
    async with (
        # 3 s: a loaded CI machine's loopback host answers in time; the slow one takes 6.
        smart_app(settings, issue_token, oauth_jwks_timeout_seconds=3) as smart,
        key_host(signer) as host,
    ):
        for name, value in serves.items():
            setattr(host, name, value)
        client_id = await register_url(smart.admin, host.url)
        description = refused(await token_for(smart, client_id, signer))
        assert description.startswith("The key set at the client's jwks_url could not be used: ")
        assert says in description


async def test_a_failed_fetch_leaves_a_fresh_key_set_in_place(smart: Smart) -> None:
    kept, unknown = ec_signer(), ec_signer("not-published")
    async with key_host(kept) as host:
        client_id = await register_url(smart.admin, host.url)
        assert (await token_for(smart, client_id, kept)).status_code == 200
        host.status = 503
        assert "it answered HTTP 503" in refused(await token_for(smart, client_id, unknown))
        assert (await token_for(smart, client_id, kept)).status_code == 200


async def test_a_client_revoked_while_its_key_set_is_fetched_gets_no_token(smart: Smart) -> None:
    signer = ec_signer()
    async with key_host(signer) as host:
        client_id = await register_url(smart.admin, host.url)
        answer = host.answer

        async def revoke_first(request: Received) -> Reply:
            revoked = await smart.admin.delete(f"/api/v1/clients/{client_id}")
            assert revoked.status_code == 204
            return await answer(request)

        assert host.receiver is not None
        host.receiver.answer = revoke_first
        description = refused(await token_for(smart, client_id, signer))
        assert description == "No registered client has this client_id, or it was revoked."


# --- how long a set is kept (the process's cache, on a clock the test moves) ------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("cache_control", "kept_s"),
    [
        (None, 300),  # OUTCOMES_OAUTH_JWKS_CACHE_SECONDS
        ("public, max-age=600", 600),
        ("max-age=86400", 3600),  # at most an hour
        ("max-age=5", 30),  # at least the refetch interval
        ("no-store", 30),
        ("no-cache", 30),
    ],
)
async def test_a_key_set_is_kept_for_its_max_age_within_bounds(
    cache_control: str | None, kept_s: float
) -> None:
    signer, clock = ec_signer(), Clock()
    key_sets = KeySets(timeout_seconds=2, cache_seconds=300, refetch_seconds=30, clock=clock)
    client_id = uuid.uuid4()
    async with key_host(signer) as host:
        if cache_control is not None:
            host.headers = {"Cache-Control": cache_control}
        try:
            await key_sets.signing_key(client_id, host.url, signer.kid, signer.alg)
            clock.now += kept_s - 0.5
            await key_sets.signing_key(client_id, host.url, signer.kid, signer.alg)
            assert len(host.fetched()) == 1
            clock.now += 0.5
            await key_sets.signing_key(client_id, host.url, signer.kid, signer.alg)
            assert len(host.fetched()) == 2
        finally:
            await key_sets.aclose()


async def test_an_unknown_kid_fetches_again_once_the_interval_has_passed() -> None:
    old, new, clock = ec_signer(), rsa_signer(), Clock()
    key_sets = KeySets(timeout_seconds=2, cache_seconds=300, refetch_seconds=30, clock=clock)
    client_id = uuid.uuid4()
    async with key_host(old) as host:
        try:
            await key_sets.signing_key(client_id, host.url, old.kid, old.alg)
            host.published = key_set(old, new)
            clock.now += 29
            with pytest.raises(KeySetUnavailable, match="fetched 29 s ago"):
                await key_sets.signing_key(client_id, host.url, new.kid, new.alg)
            assert len(host.fetched()) == 1
            clock.now += 1
            await key_sets.signing_key(client_id, host.url, new.kid, new.alg)
            assert len(host.fetched()) == 2
        finally:
            await key_sets.aclose()


async def test_requests_that_need_a_fetch_at_once_wait_for_one() -> None:
    signer = ec_signer()
    key_sets = KeySets(timeout_seconds=2, cache_seconds=300, refetch_seconds=30)
    client_id = uuid.uuid4()
    async with key_host(signer) as host:
        host.delay_s = 0.2
        try:
            keys = await asyncio.gather(
                *(
                    key_sets.signing_key(client_id, host.url, signer.kid, signer.alg)
                    for _ in range(5)
                )
            )
        finally:
            await key_sets.aclose()
    assert len(host.fetched()) == 1
    assert {key.key_id for key in keys} == {signer.kid}
