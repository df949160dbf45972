"""A short-lived cache of authenticated principals, keyed by access token.

Authenticating a request read the user row each time (one database round trip per request or
socket). The cache keeps the answer for `ttl_s`. Changes made through this process that must
end access at once (disable, delete, role change, password change) call `forget_user`, so in
one process they still take effect on the next request; another worker sees them within
`ttl_s`. An entry never outlives its token's expiry (`put(expires_at=...)`), so a token is
verified when it is cached and expiry stays exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from webui_backend.services.principal import AuthenticatedUser

DEFAULT_TTL_S = 5.0
_MAX_ENTRIES = 10_000


class PrincipalCache:
    def __init__(
        self, *, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, AuthenticatedUser]] = {}
        self._generation = 0

    @property
    def generation(self) -> int:
        """Read before loading a principal and pass to `put`: a `forget_user` in between
        (the load may predate the change) keeps the answer out of the cache."""
        return self._generation

    def get(self, key: str) -> AuthenticatedUser | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        return entry[1]

    def put(
        self,
        key: str,
        principal: AuthenticatedUser,
        generation: int,
        *,
        expires_at: float | None = None,
    ) -> None:
        """Cache for `ttl_s`, or until `expires_at` (wall-clock seconds) if that is sooner."""
        if generation != self._generation:
            return
        if len(self._entries) >= _MAX_ENTRIES:
            # Bounded memory: start over rather than track recency on the hot path.
            self._entries.clear()
        now = self._clock()
        until = now + self._ttl_s
        if expires_at is not None:
            until = min(until, now + (expires_at - time.time()))
        self._entries[key] = (until, principal)

    def forget_user(self, user_id: str) -> None:
        """Drop every cached principal of `user_id` (an administrative change: rare)."""
        self._generation += 1
        stale = [key for key, (_, p) in self._entries.items() if p.id == user_id]
        for key in stale:
            del self._entries[key]
