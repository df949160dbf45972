"""Stop strings matched on decoded text across token boundaries, without leaking partial stops.

Text arrives in arbitrary pieces. A stop string may straddle pieces, so the tail of the text
that could still become a stop string is held back until the next piece decides it (vLLM's
`stop_buffer_length`, but we hold back only the tail that really is a prefix of some stop
string, not a fixed max(len)-1 characters, so ordinary text is not delayed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence


class StopStringMatcher:
    """Feeds text through, truncating at the first stop string; one instance per sequence."""

    __slots__ = ("_first_chars", "_max_hold", "_pending", "_stops")

    def __init__(self, stops: Sequence[str]) -> None:
        if not stops or any(not s for s in stops):
            raise ValueError("stop strings must be non-empty, and at least one is needed")
        self._stops = tuple(stops)
        self._max_hold = max(len(s) for s in self._stops) - 1
        self._first_chars = re.compile("[" + re.escape("".join({s[0] for s in stops})) + "]")
        self._pending = ""

    def push(self, text: str) -> tuple[str, str | None]:
        """Adds text; returns (text safe to emit, the stop string that matched or None).

        After a match, the returned text ends right before the stop string and the matcher
        must not be used again.
        """
        buffer = self._pending + text
        match_at = -1
        matched: str | None = None
        # A stop cannot lie wholly inside the pending tail (it would have matched before), so
        # searching the whole buffer is correct and short (pending <= longest stop - 1).
        for stop in self._stops:
            at = buffer.find(stop)
            if at >= 0 and (match_at < 0 or at < match_at):
                match_at, matched = at, stop
        if matched is not None:
            self._pending = ""
            return buffer[:match_at], matched
        hold_from = self._hold_from(buffer)
        self._pending = buffer[hold_from:]
        return buffer[:hold_from], None

    def flush(self) -> str:
        """At the end of generation: the held-back tail, which is ordinary text after all."""
        pending, self._pending = self._pending, ""
        return pending

    def _hold_from(self, buffer: str) -> int:
        """Index where the longest tail of `buffer` that is a prefix of a stop string starts."""
        start = max(0, len(buffer) - self._max_hold)
        search = self._first_chars.search
        found = search(buffer, start)
        while found is not None:
            at = found.start()
            tail = buffer[at:]
            if any(stop.startswith(tail) for stop in self._stops):
                return at
            found = search(buffer, at + 1)
        return len(buffer)
