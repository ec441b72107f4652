"""The SQL of push: fanning events out to subscriptions, claiming due deliveries, recording
attempts, purging, the outbox's figures, and the subscription and delivery pages."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.auth.models import ApiToken
from app.core.db import new_id, table_of, utcnow
from app.core.pagination import paginate
from app.outbox.events import OUTBOX
from app.push.models import PushDelivery, PushSubscription

SUBSCRIPTIONS = table_of(PushSubscription)
DELIVERIES = table_of(PushDelivery)
TOKENS = table_of(ApiToken)
# One fan-out at a time across every process (PostgreSQL): deliveries are numbered, and a
# stream's events are fanned out, in the outbox's order.
FAN_OUT_LOCK = 0x6F7574626F78  # "outbox"
FHIR_TOPIC_EVENTS = frozenset({"course.frequency_changed"})


@dataclass(frozen=True, slots=True)
class FanOut:
    """What a fan-out did: how many events it took (a full batch: there may be more), and
    whether any subscription existed (None when another process held the fan-out)."""

    events: int
    subscribed: bool | None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery claimed for one attempt, with what the attempt sends."""

    id: uuid.UUID
    claim: uuid.UUID
    attempts: int
    retry_until: datetime
    number: int
    event_id: uuid.UUID
    event_type: str
    patient_id: uuid.UUID
    course_id: uuid.UUID | None
    occurred_at: datetime
    payload: str
    subscription: PushSubscription


class PushRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- fan-out ------------------------------------------------------------------------------

    async def fan_out(self, now: datetime, retry_window: timedelta, limit: int = 500) -> FanOut:
        """The oldest events not yet fanned out: a delivery for each subscription that wants
        it (a FHIR subscription only if its token may still read the patient), and the events
        marked. With no subscription at all, the events are only marked, in one statement
        (nothing is read back: the service's usual state, and a poll of every process)."""
        if self.session.get_bind().dialect.name == "postgresql":
            locked = await self.session.scalar(select(func.pg_try_advisory_xact_lock(FAN_OUT_LOCK)))
            if not locked:
                return FanOut(0, None)
        # Under the lock, as the subscriptions below: a subscription made meanwhile gets the
        # events of the next fan-out, in order (never a later batch before an earlier one).
        if not await self.session.scalar(select(exists().select_from(SUBSCRIPTIONS))):
            oldest = (
                select(OUTBOX.c.seq)
                .where(OUTBOX.c.dispatched_at.is_(None))
                .order_by(OUTBOX.c.seq)
                .limit(limit)
            )
            marked = await self.session.execute(
                update(OUTBOX).where(OUTBOX.c.seq.in_(oldest)).values(dispatched_at=now)
            )
            return FanOut(int(getattr(marked, "rowcount", 0)), False)
        found = (
            await self.session.execute(
                select(OUTBOX.c.seq, OUTBOX.c.type, OUTBOX.c.patient_id, OUTBOX.c.course_id)
                .where(OUTBOX.c.dispatched_at.is_(None))
                .order_by(OUTBOX.c.seq)
                .limit(limit)
            )
        ).all()
        if not found:
            return FanOut(0, True)
        subscriptions = list((await self.session.scalars(select(PushSubscription))).all())
        readers = await self._live_tokens([s.token_id for s in subscriptions if s.token_id])
        rows: list[dict[str, Any]] = []
        for seq, event_type, patient_id, course_id in found:
            for sub in subscriptions:
                if not _wants(sub, event_type, patient_id, readers):
                    continue
                sub.events_count += 1
                rows.append(
                    {
                        "id": new_id(),
                        "subscription_id": sub.id,
                        "event_seq": seq,
                        "stream_id": course_id or patient_id,
                        "number": sub.events_count,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "retry_until": now + retry_window,
                        "created_at": now,
                    }
                )
        if rows:
            await self.session.execute(DELIVERIES.insert(), rows)
        await self.session.execute(
            update(OUTBOX)
            .where(OUTBOX.c.seq.in_([row.seq for row in found]))
            .values(dispatched_at=now)
        )
        await self.session.flush()  # the subscriptions' counts
        return FanOut(len(found), True)

    async def _live_tokens(
        self, token_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, uuid.UUID | None]:
        """Of ``token_ids``, those neither revoked nor expired: the patient each is bound to."""
        if not token_ids:
            return {}
        stmt = select(TOKENS.c.id, TOKENS.c.patient_id, TOKENS.c.expires_at).where(
            TOKENS.c.id.in_(list(token_ids)), TOKENS.c.revoked_at.is_(None)
        )
        moment = utcnow()
        return {
            token_id: patient_id
            for token_id, patient_id, expires_at in (await self.session.execute(stmt)).all()
            if expires_at is None or expires_at > moment
        }

    # --- claims and attempts ------------------------------------------------------------------

    async def claim(
        self,
        now: datetime,
        lease: timedelta,
        limit: int,
        per_subscription: int,
        in_flight: Mapping[uuid.UUID, int],
    ) -> list[Claimed]:
        """Up to ``limit`` due deliveries, each the first pending one of its stream for its
        subscription (a stream's next event waits until the one before is delivered or
        failed), skipping those another process holds, and no more for a subscription than
        ``per_subscription`` less its attempts ``in_flight`` in this process. Each is leased:
        due again at ``now + lease`` unless its attempt ends first, so a process that dies
        mid-attempt loses nothing."""
        earlier = aliased(PushDelivery)
        d = DELIVERIES
        stmt = (
            select(d.c.id, d.c.subscription_id)
            .where(
                d.c.status == "pending",
                d.c.next_attempt_at <= now,
                ~exists().where(
                    earlier.subscription_id == d.c.subscription_id,
                    earlier.stream_id == d.c.stream_id,
                    earlier.status == "pending",
                    earlier.event_seq < d.c.event_seq,
                ),
            )
            .order_by(d.c.next_attempt_at, d.c.event_seq)
            .limit(limit)
            .with_for_update(skip_locked=True, of=d)
        )
        full = [sub for sub, n in in_flight.items() if n >= per_subscription]
        if full:
            stmt = stmt.where(d.c.subscription_id.not_in(full))
        # A subscription's share of the rows found; the others are only locked until the
        # transaction ends (and stay due for the next claim).
        taken: Counter[uuid.UUID] = Counter()
        ids: list[uuid.UUID] = []
        for delivery_id, sub_id in (await self.session.execute(stmt)).all():
            if in_flight.get(sub_id, 0) + taken[sub_id] < per_subscription:
                taken[sub_id] += 1
                ids.append(delivery_id)
        if not ids:
            return []
        claim = new_id()
        await self.session.execute(
            update(d)
            .where(d.c.id.in_(ids))
            .values(
                claim=claim,
                attempts=d.c.attempts + 1,
                next_attempt_at=now + lease,
                last_attempt_at=now,
            )
        )
        rows = (
            await self.session.execute(
                select(
                    d.c.id,
                    d.c.attempts,
                    d.c.retry_until,
                    d.c.number,
                    d.c.subscription_id,
                    OUTBOX.c.id.label("event_id"),
                    OUTBOX.c.type,
                    OUTBOX.c.patient_id,
                    OUTBOX.c.course_id,
                    OUTBOX.c.occurred_at,
                    OUTBOX.c.payload,
                )
                .join(OUTBOX, OUTBOX.c.seq == d.c.event_seq)
                .where(d.c.id.in_(ids))
                .order_by(d.c.event_seq)
            )
        ).all()
        subs = {
            s.id: s
            for s in await self.session.scalars(
                select(PushSubscription).where(
                    PushSubscription.id.in_({row.subscription_id for row in rows})
                )
            )
        }
        return [
            Claimed(
                id=row.id,
                claim=claim,
                attempts=row.attempts,
                retry_until=row.retry_until,
                number=row.number,
                event_id=row.event_id,
                event_type=row.type,
                patient_id=row.patient_id,
                course_id=row.course_id,
                occurred_at=row.occurred_at,
                payload=row.payload,
                subscription=subs[row.subscription_id],
            )
            for row in rows
        ]

    async def delivered(self, claimed: Claimed, now: datetime, status: int) -> None:
        await self.session.execute(
            update(DELIVERIES)
            .where(DELIVERIES.c.id == claimed.id, DELIVERIES.c.claim == claimed.claim)
            .values(
                status="delivered",
                delivered_at=now,
                last_status=status,
                last_error=None,
                claim=None,
            )
        )
        await self.session.execute(
            update(SUBSCRIPTIONS)
            .where(SUBSCRIPTIONS.c.id == claimed.subscription.id)
            .values(last_sent_at=now)
        )

    async def attempt_failed(
        self,
        claimed: Claimed,
        now: datetime,
        status: int | None,
        error: str,
        next_attempt_at: datetime | None,
    ) -> None:
        """A failed attempt: due again at ``next_attempt_at``, or `failed` when None."""
        values: dict[str, Any] = {"last_status": status, "last_error": error[:200], "claim": None}
        if next_attempt_at is None:
            values["status"] = "failed"
        else:
            values["next_attempt_at"] = next_attempt_at
        await self.session.execute(
            update(DELIVERIES)
            .where(DELIVERIES.c.id == claimed.id, DELIVERIES.c.claim == claimed.claim)
            .values(values)
        )

    # --- heartbeats, retention, figures -------------------------------------------------------

    async def due_heartbeats(self, now: datetime) -> list[PushSubscription]:
        """FHIR subscriptions whose heartbeat is due, each taken by one process only (a
        compare-and-set on its last send). Not those whose token is revoked or expired: they
        hear nothing more, not even that the server is alive."""
        subs = (
            await self.session.scalars(
                select(PushSubscription).where(
                    PushSubscription.kind == "fhir", PushSubscription.heartbeat_seconds.is_not(None)
                )
            )
        ).all()
        live = await self._live_tokens([s.token_id for s in subs if s.token_id])
        taken = []
        for sub in subs:
            if sub.token_id not in live:
                continue
            assert sub.heartbeat_seconds is not None
            last = sub.last_sent_at or sub.created_at
            if now - last < timedelta(seconds=sub.heartbeat_seconds):
                continue
            result = await self.session.execute(
                update(SUBSCRIPTIONS)
                .where(
                    SUBSCRIPTIONS.c.id == sub.id,
                    SUBSCRIPTIONS.c.last_sent_at.is_(None)
                    if sub.last_sent_at is None
                    else SUBSCRIPTIONS.c.last_sent_at == sub.last_sent_at,
                )
                .values(last_sent_at=now)
            )
            if getattr(result, "rowcount", 0) == 1:
                taken.append(sub)
        return taken

    async def purge(self, before: datetime) -> None:
        """Delivered deliveries, and events with no delivery left, older than ``before``."""
        await self.session.execute(
            delete(DELIVERIES).where(
                DELIVERIES.c.status == "delivered", DELIVERIES.c.delivered_at < before
            )
        )
        await self.session.execute(
            delete(OUTBOX).where(
                OUTBOX.c.dispatched_at.is_not(None),
                OUTBOX.c.occurred_at < before,
                ~exists().where(DELIVERIES.c.event_seq == OUTBOX.c.seq),
            )
        )

    async def figures(self) -> tuple[int, int, datetime | None]:
        """The outbox's size: (pending, failed, the oldest pending moment): deliveries not yet
        delivered nor failed, and events not yet fanned out, count as pending."""
        found = await self.session.execute(
            select(DELIVERIES.c.status, func.count(), func.min(DELIVERIES.c.created_at))
            .where(DELIVERIES.c.status.in_(("pending", "failed")))
            .group_by(DELIVERIES.c.status)
        )
        by_status = {status: (count, oldest) for status, count, oldest in found.all()}
        undispatched = (
            await self.session.execute(
                select(func.count(), func.min(OUTBOX.c.occurred_at)).where(
                    OUTBOX.c.dispatched_at.is_(None)
                )
            )
        ).one()
        pending_count, pending_oldest = by_status.get("pending", (0, None))
        failed_count, _ = by_status.get("failed", (0, None))
        oldest = [m for m in (pending_oldest, undispatched[1]) if m is not None]
        return (
            int(pending_count) + int(undispatched[0]),
            int(failed_count),
            min(oldest) if oldest else None,
        )

    # --- subscriptions and deliveries ---------------------------------------------------------

    async def add(self, subscription: PushSubscription) -> None:
        self.session.add(subscription)
        await self.session.flush()

    async def get(self, subscription_id: uuid.UUID, kind: str) -> PushSubscription | None:
        sub = await self.session.get(PushSubscription, subscription_id)
        return sub if sub is not None and sub.kind == kind else None

    async def remove(self, subscription: PushSubscription) -> None:
        await self.session.execute(
            delete(DELIVERIES).where(DELIVERIES.c.subscription_id == subscription.id)
        )
        await self.session.delete(subscription)
        await self.session.flush()

    async def page(
        self, kind: str, limit: int, cursor: str | None
    ) -> tuple[list[PushSubscription], str | None]:
        stmt = select(PushSubscription).where(PushSubscription.kind == kind)
        return await paginate(
            self.session, stmt, [PushSubscription.created_at, PushSubscription.id], limit, cursor
        )

    async def deliveries(
        self, subscription_id: uuid.UUID, status: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Any], str | None]:
        stmt = select(PushDelivery).where(PushDelivery.subscription_id == subscription_id)
        if status is not None:
            stmt = stmt.where(PushDelivery.status == status)
        return await paginate(
            self.session, stmt, [PushDelivery.created_at, PushDelivery.id], limit, cursor
        )

    async def event_ids(self, seqs: Sequence[int]) -> dict[int, tuple[uuid.UUID, str]]:
        if not seqs:
            return {}
        rows = await self.session.execute(
            select(OUTBOX.c.seq, OUTBOX.c.id, OUTBOX.c.type).where(OUTBOX.c.seq.in_(list(seqs)))
        )
        return {seq: (event_id, event_type) for seq, event_id, event_type in rows.all()}

    async def delivery(self, subscription_id: uuid.UUID, delivery_id: uuid.UUID) -> Any:
        found = await self.session.get(PushDelivery, delivery_id)
        return found if found is not None and found.subscription_id == subscription_id else None

    async def resend(self, delivery: PushDelivery, now: datetime, window: timedelta) -> None:
        """Due again now, with a new retry window (the attempts so far are kept)."""
        delivery.status = "pending"
        delivery.next_attempt_at = now
        delivery.retry_until = now + window
        delivery.claim = None
        delivery.delivered_at = None
        await self.session.flush()


def _wants(
    sub: PushSubscription,
    event_type: str,
    patient_id: uuid.UUID,
    readers: dict[uuid.UUID, uuid.UUID | None],
) -> bool:
    if sub.kind == "webhook":
        return event_type in sub.events
    if event_type not in FHIR_TOPIC_EVENTS or sub.token_id not in readers:
        return False  # not the topic's, or the token is revoked or expired
    bound = readers[sub.token_id]
    return (bound is None or bound == patient_id) and sub.patient_id in (None, patient_id)
