"""Every query of enrolment: codes, devices and their refresh tokens."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, case, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.enrolment.models import Device, EnrolmentCode, RefreshToken


class EnrolmentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, *rows: EnrolmentCode | Device | RefreshToken) -> None:
        self.session.add_all(rows)
        await self.session.flush()

    # --- codes ------------------------------------------------------------------------------

    async def lookup_in_use(self, lookup: str, now: datetime) -> bool:
        """Whether a code that can still be exchanged has this public part."""
        stmt = select(EnrolmentCode.id).where(EnrolmentCode.lookup == lookup, *_live_code(now))
        return (await self.session.scalar(stmt.limit(1))) is not None

    async def codes_named(self, lookup: str, now: datetime) -> list[EnrolmentCode]:
        """The codes with this public part that a guess may be at: live ones, and used ones
        (presented again, they reveal that the code was seen), neither expired nor burned."""
        stmt = select(EnrolmentCode).where(
            EnrolmentCode.lookup == lookup,
            EnrolmentCode.burned_at.is_(None),
            EnrolmentCode.expires_at > now,
        )
        return list((await self.session.scalars(stmt.order_by(EnrolmentCode.id))).all())

    async def use_code(self, code_id: uuid.UUID, now: datetime) -> bool:
        """Mark the code used, if it still can be: False when another request used it first.
        The conditional UPDATE is the guard (PostgreSQL re-checks it once the row lock is
        free; SQLite runs one writer at a time)."""
        result = await self.session.execute(
            update(EnrolmentCode)
            .where(EnrolmentCode.id == code_id, *_live_code(now))
            .values(used_at=now)
            .returning(EnrolmentCode.id)
            .execution_options(synchronize_session=False)
        )
        return result.first() is not None

    async def count_failed_attempt(
        self, code_ids: Sequence[uuid.UUID], now: datetime, burn_at: int
    ) -> None:
        """One more wrong guess at each of these codes; the `burn_at`-th burns a code."""
        if not code_ids:
            return
        await self.session.execute(
            update(EnrolmentCode)
            .where(EnrolmentCode.id.in_(code_ids), *_live_code(now))
            .values(
                failed_attempts=EnrolmentCode.failed_attempts + 1,
                # The right side reads the row before this update, on both databases.
                burned_at=case(
                    (EnrolmentCode.failed_attempts + 1 >= burn_at, now),
                    else_=EnrolmentCode.burned_at,
                ),
            )
            .execution_options(synchronize_session=False)
        )

    # --- devices and refresh tokens -----------------------------------------------------------

    async def devices(self, patient_id: uuid.UUID) -> list[Device]:
        stmt = (
            select(Device)
            .where(Device.patient_id == patient_id)
            .order_by(Device.created_at, Device.id)
        )
        return list((await self.session.scalars(stmt)).all())

    async def device(self, patient_id: uuid.UUID, device_id: uuid.UUID) -> Device | None:
        stmt = select(Device).where(Device.id == device_id, Device.patient_id == patient_id)
        return await self.session.scalar(stmt)

    async def devices_enrolled_with(self, code_id: uuid.UUID) -> list[uuid.UUID]:
        stmt = select(Device.id).where(Device.enrolment_id == code_id)
        return list((await self.session.scalars(stmt)).all())

    async def refresh_token(self, digest: str) -> tuple[RefreshToken, Device] | None:
        stmt = (
            select(RefreshToken, Device)
            .join(Device, Device.id == RefreshToken.device_id)
            .where(RefreshToken.token_hash == digest)
        )
        row = (await self.session.execute(stmt)).first()
        return None if row is None else (row[0], row[1])

    async def use_refresh_token(self, token_id: uuid.UUID, now: datetime) -> bool:
        """Mark the refresh token used, if it is not yet: False when another request did."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.id == token_id,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
            )
            .values(used_at=now)
            .returning(RefreshToken.id)
            .execution_options(synchronize_session=False)
        )
        return result.first() is not None

    async def seen(self, device_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(Device)
            .where(Device.id == device_id)
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )

    async def revoke_device(self, device_id: uuid.UUID, now: datetime) -> None:
        """The device and every refresh token it holds stop (its access tokens are revoked by
        the token service, which tells every process)."""
        await self.session.execute(
            update(Device)
            .where(Device.id == device_id, Device.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.device_id == device_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )

    # --- purging dead ones (app/credentials) -------------------------------------------------

    async def purge_dead_codes(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` codes that expired (used or not) or were burned before
        ``before``: how many. A used code is kept until it expires, since presented again
        until then it revokes the device it enrolled; that device then forgets its code."""
        dead = or_(EnrolmentCode.expires_at < before, EnrolmentCode.burned_at < before)
        # PostgreSQL: processes purging at once take disjoint rows (no waits, no deadlock).
        stmt = select(EnrolmentCode.id).where(dead).limit(limit).with_for_update(skip_locked=True)
        code_ids = list((await self.session.scalars(stmt)).all())
        if not code_ids:
            return 0
        await self.session.execute(
            update(Device)
            .where(Device.enrolment_id.in_(code_ids))
            .values(enrolment_id=None)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(
            delete(EnrolmentCode)
            .where(EnrolmentCode.id.in_(code_ids))
            .execution_options(synchronize_session=False)
        )
        return len(code_ids)

    async def purge_dead_refresh_tokens(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` refresh tokens that expired or were revoked before
        ``before``: how many. A used one is kept until it expires, since presented again until
        then it revokes its device (it leaked)."""
        dead = or_(RefreshToken.expires_at < before, RefreshToken.revoked_at < before)
        chosen = select(RefreshToken.id).where(dead).limit(limit).with_for_update(skip_locked=True)
        result = await self.session.execute(
            delete(RefreshToken)
            .where(RefreshToken.id.in_(chosen))
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], result).rowcount


def _live_code(now: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        EnrolmentCode.used_at.is_(None),
        EnrolmentCode.burned_at.is_(None),
        EnrolmentCode.expires_at > now,
    )
