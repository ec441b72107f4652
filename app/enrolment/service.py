"""Enrolling a patient app: a code a clinician hands over, exchanged once for a device with an
access token and a refresh token; refreshing rotates the refresh token; revoking the device
stops all of them at once.

What each step promises (docs/security.md, "Patient apps"):
- A code is exchanged once. Two requests racing with it: the conditional UPDATE that marks it
  used lets one through. A wrong guess at a code counts against the code its public part
  names; the MAX_FAILED_ATTEMPTS-th burns it.
- A used code presented again with its secret means it was seen by someone else: the device
  enrolled with it is revoked (RFC 6749 §4.1.2 asks the same of a reused authorization code).
- A refresh token is used once; each use returns a new pair. A used one presented again means
  it leaked (OAuth 2.0 Security BCP, refresh token rotation): the device is revoked with every
  refresh and access token it holds. Two requests racing with one refresh token: one gets the
  new pair, the other counts as that reuse, so the device is revoked (the winner's new tokens
  included): an app must refresh one request at a time.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiToken
from app.auth.principal import Principal
from app.auth.service import TokenService
from app.auth.tokens import token_hash
from app.core.db import utcnow
from app.enrolment import codes
from app.enrolment.errors import DeviceNotFound, InvalidGrant
from app.enrolment.models import Device, EnrolmentCode, RefreshToken
from app.enrolment.repository import EnrolmentRepository

# What an enrolled app's access token may do: read the patient's data and record the
# patient's observations (SMART v2 scopes; the role `patient` and the patient id bound it to
# that one patient). Written once, here.
PATIENT_APP_SCOPE = "patient/*.rs patient/Observation.c"
PATIENT_APP_ROLE = "patient"
# API.md: "5 failures burn it".
MAX_FAILED_ATTEMPTS = 5
DEFAULT_EXPIRES_IN_HOURS = 24.0
MAX_EXPIRES_IN_HOURS = 72.0
# Attempts at drawing a code whose public part no live code has (a clash is rare: 20 bits).
_DRAWS = 20


@dataclass(frozen=True, slots=True)
class Lifetimes:
    access: timedelta
    refresh: timedelta


@dataclass(frozen=True, slots=True)
class NewCode:
    code: str  # grouped, shown once
    row: EnrolmentCode


@dataclass(frozen=True, slots=True)
class AppTokens:
    """A new access and refresh token pair for a device (the secrets are shown once)."""

    access_token: str
    refresh_token: str
    expires_in: int  # seconds
    principal: Principal  # the access token's, for the audit trail

    @property
    def patient_id(self) -> uuid.UUID:
        assert self.principal.patient_id is not None
        return self.principal.patient_id


class EnrolmentService:
    def __init__(
        self, session: AsyncSession, tokens: TokenService, lifetimes: Lifetimes | None = None
    ) -> None:
        self.session = session
        self.repo = EnrolmentRepository(session)
        self.tokens = tokens
        self.lifetimes = lifetimes

    # --- codes ------------------------------------------------------------------------------

    async def create_code(
        self, patient_id: uuid.UUID, expires_in_hours: float, created_by: uuid.UUID | None
    ) -> NewCode:
        now = utcnow()
        for _ in range(_DRAWS):
            code = codes.new_code()
            if not await self.repo.lookup_in_use(codes.lookup_of(code), now):
                break
        # A clash left after every draw is still served: the exchange checks every live code
        # with the public part it is given.
        code_hash = await asyncio.to_thread(codes.hash_code, code)
        row = EnrolmentCode(
            patient_id=patient_id,
            lookup=codes.lookup_of(code),
            code_hash=code_hash,
            created_by=created_by,
            created_at=now,
            expires_at=now + timedelta(hours=expires_in_hours),
            failed_attempts=0,
        )
        await self.repo.add(row)
        return NewCode(codes.grouped(code), row)

    async def exchange_code(
        self, typed: str, device_name: str, reader: AsyncSession | None = None
    ) -> AppTokens:
        """A new device, enrolled with the code, and its first pair of tokens.

        The codes the guess names are read on ``reader`` (a session outside this request's
        transaction, when given) and hashed before anything is written: the slow hash then
        runs with no transaction open, so on SQLite no write lock is held through it (a flood
        of guesses would otherwise hold it most of the time). What is written after is guarded
        by its own conditions (`use_code`): a code used in the meantime is found used."""
        code = codes.canonical(typed)
        if code is None:
            raise InvalidGrant()
        now = utcnow()
        named = await EnrolmentRepository(reader or self.session).codes_named(
            codes.lookup_of(code), now
        )
        match = await _matching(code, named)
        if match is None:
            live = [row for row in named if row.used_at is None]
            await self.repo.count_failed_attempt([row.id for row in live], now, MAX_FAILED_ATTEMPTS)
            raise InvalidGrant(live[0].patient_id if live else None)
        if match.used_at is not None or not await self.repo.use_code(match.id, now):
            # Used already (or just now, by a request racing this one): the code is known to
            # someone else too.
            for device_id in await self.repo.devices_enrolled_with(match.id):
                await self._revoke(device_id, now)
            raise InvalidGrant(match.patient_id)
        device = Device(
            patient_id=match.patient_id,
            name=device_name,
            enrolment_id=match.id,
            created_at=now,
            last_seen_at=now,
        )
        await self.repo.add(device)
        return await self._issue(device, now)

    # --- refresh ----------------------------------------------------------------------------

    async def refresh(self, presented: str) -> AppTokens:
        """A new pair for the refresh token's device; the presented token dies."""
        now = utcnow()
        found = await self.repo.refresh_token(token_hash(presented))
        if found is None:
            raise InvalidGrant()
        token, device = found
        if device.revoked_at is not None or token.revoked_at is not None:
            raise InvalidGrant(device.patient_id)
        if token.used_at is None and token.expires_at <= now:
            raise InvalidGrant(device.patient_id)  # expired unused: nothing to revoke
        if token.used_at is not None or not await self.repo.use_refresh_token(token.id, now):
            # Reuse (or a request racing this one with the same token): the token was
            # copied. Whoever holds the chain now, it ends here.
            await self._revoke(device.id, now)
            raise InvalidGrant(device.patient_id)
        await self.repo.seen(device.id, now)
        return await self._issue(device, now)

    # --- devices ----------------------------------------------------------------------------

    async def devices(self, patient_id: uuid.UUID) -> list[Device]:
        return await self.repo.devices(patient_id)

    async def revoke_device(self, patient_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """Stop the device and every token it holds, at once in every process. Revoking a
        revoked device changes nothing (the first time is kept)."""
        device = await self.repo.device(patient_id, device_id)
        if device is None:
            raise DeviceNotFound(device_id)
        await self._revoke(device.id, utcnow())

    async def _revoke(self, device_id: uuid.UUID, now: datetime) -> None:
        await self.repo.revoke_device(device_id, now)
        # The access tokens still alive: an app refreshing every 15 minutes leaves thousands
        # of expired ones, which need no revocation (nor a notification each).
        await self.tokens.revoke_where(ApiToken.device_id == device_id, ApiToken.expires_at > now)

    async def _issue(self, device: Device, now: datetime) -> AppTokens:
        assert self.lifetimes is not None, "issuing tokens needs their lifetimes"
        issued = await self.tokens.issue_scoped(
            role=PATIENT_APP_ROLE,
            scope=PATIENT_APP_SCOPE,
            lifetime=self.lifetimes.access,
            patient_id=device.patient_id,
            device_id=device.id,
        )
        refresh_token = codes.new_refresh_token()
        await self.repo.add(
            RefreshToken(
                device_id=device.id,
                token_hash=token_hash(refresh_token),
                created_at=now,
                expires_at=now + self.lifetimes.refresh,
            )
        )
        row = issued.row
        principal = Principal(
            row.id, row.role, row.patient_id, row.expires_at, row.scope, row.client_id, device.id
        )
        return AppTokens(
            issued.token, refresh_token, int(self.lifetimes.access.total_seconds()), principal
        )


async def _matching(code: str, candidates: list[EnrolmentCode]) -> EnrolmentCode | None:
    """The candidate ``code`` is, comparing slow hashes off the event loop. With no candidate,
    a decoy is hashed all the same: the answer takes as long whether or not the public part
    names a code."""
    if not candidates:
        await asyncio.to_thread(codes.verify_code, code, codes.DECOY_HASH)
        return None
    for row in candidates:
        if await asyncio.to_thread(codes.verify_code, code, row.code_hash):
            return row
    return None
