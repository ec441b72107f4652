"""The cache of resolved tokens, shared by the token service and the revocation listener."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict

from app.auth.principal import Principal


class TokenCache:
    """A bounded cache of resolved tokens, so most requests skip the token query.

    Entries live ``ttl`` seconds: a revocation elsewhere (another worker or machine) takes
    effect within that time, and at once in the process that revoked it (``forget``). While
    the process hears every revocation as it commits (PostgreSQL: app/auth/revocations.py,
    ``listening``), entries live ``pushed_ttl`` seconds instead: a revocation then takes effect
    at once everywhere, and the TTL only bounds what an unnoticed failure could cost.
    Unknown tokens are never cached, so guessing cannot fill it.
    """

    def __init__(self, ttl: float = 1.0, size: int = 10_000, pushed_ttl: float = 0) -> None:
        self.ttl = ttl
        self.pushed_ttl = pushed_ttl
        self.size = size
        self.listening = False
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: str) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        stored_at, principal = entry
        ttl = self.pushed_ttl if self.listening and self.pushed_ttl > 0 else self.ttl
        if time.monotonic() - stored_at > ttl:
            del self._entries[digest]
            return None
        return principal

    def put(self, digest: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        self._entries[digest] = (time.monotonic(), principal)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def forget(self, token_id: uuid.UUID) -> None:
        for digest in [d for d, (_, p) in self._entries.items() if p.token_id == token_id]:
            del self._entries[digest]

    def clear(self) -> None:
        self._entries.clear()

    def hear_revocations(self, listening: bool) -> None:
        """Start or stop trusting entries for ``pushed_ttl``. Either way the cache is emptied:
        a revocation may have gone unheard while the process was not listening."""
        self.listening = listening
        self.clear()
