"""Keys and values of recent sequences kept for reuse, so that a prompt prefills only what is new.

Every turn of a chat sends the whole conversation again, and every new chat starts with the
same template and system prompt. Without reuse the transformers backend computed all of it
again on every turn: on a CPU the prefill of a long history costs seconds. The store keeps the
keys and values of sequences that left the batch (finished, stopped or cancelled), keyed by
the token ids they cover, and a new prompt starts from the entry that shares its longest
prefix. A token's keys and values depend only on the tokens before it and on its position
(padding is masked out), so reused columns are what a prefill would compute.

Bounded in bytes (`RUNNER_PREFIX_CACHE_MB`), least recently used first out. An entry that a
newer one extends (the same chat one turn later) is dropped when the newer one comes in. Only
the engine thread touches the store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

# Fewer shared tokens than this are prefilled again: copying a handful of columns into the
# batch costs about what computing them does.
MIN_REUSED_TOKENS = 16


@dataclass(frozen=True, slots=True)
class CachedPrefix:
    """The keys and values of `tokens`, per layer, each [kv heads, len(tokens), head dim]."""

    tokens: tuple[int, ...]
    layers: tuple[tuple[Any, Any], ...]
    nbytes: int


class PrefixStore:
    """Recently computed sequences by their token ids; see the module docstring."""

    def __init__(self, max_bytes: int, min_tokens: int = MIN_REUSED_TOKENS) -> None:
        self._max_bytes = max_bytes
        self._min_tokens = max(1, min_tokens)
        self._entries: OrderedDict[tuple[int, ...], CachedPrefix] = OrderedDict()
        self._bytes = 0

    @property
    def enabled(self) -> bool:
        return self._max_bytes > 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, prompt: Sequence[int]) -> tuple[CachedPrefix | None, int]:
        """The entry sharing the longest prefix with `prompt`, and how many of its tokens to
        reuse: at most all but the prompt's last token, whose logits the prefill must give."""
        limit = len(prompt) - 1
        if limit < self._min_tokens or not self._entries:
            return None, 0
        wanted = tuple(prompt[:limit])
        best: CachedPrefix | None = None
        best_n = self._min_tokens - 1
        for entry in self._entries.values():
            n = common_prefix(entry.tokens, wanted)
            if n > best_n:
                best, best_n = entry, n
        if best is None:
            return None, 0
        self._entries.move_to_end(best.tokens)
        return best, best_n

    def add(self, tokens: Sequence[int], layers: Sequence[tuple[Any, Any]]) -> None:
        """Keeps `layers` (per layer keys and values, [kv heads, len(tokens), head dim]) as the
        computed state of `tokens`, evicting the least recently used entries to make room."""
        key = tuple(tokens)
        if len(key) < self._min_tokens:
            return
        nbytes = sum(k.nbytes + v.nbytes for k, v in layers)
        if nbytes > self._max_bytes:
            return
        for other in list(self._entries):
            if len(other) >= len(key) and other[: len(key)] == key:
                self._entries.move_to_end(other)  # already covered by a longer entry
                return
            if key[: len(other)] == other:
                self._drop(other)  # this one extends it: the same chat, one turn later
        while self._entries and self._bytes + nbytes > self._max_bytes:
            self._drop(next(iter(self._entries)))
        self._entries[key] = CachedPrefix(key, tuple(layers), nbytes)
        self._bytes += nbytes

    def _drop(self, key: tuple[int, ...]) -> None:
        self._bytes -= self._entries.pop(key).nbytes


def stack_prefixes(rows: Sequence[tuple[CachedPrefix | None, int]], width: int) -> list[Any]:
    """Per layer, keys and values [rows, heads, width, dim] holding each row's first `n` tokens
    of its entry, left-padded with zeros (a row without an entry is all padding)."""
    first = next(entry for entry, _ in rows if entry is not None)
    layers = []
    for index, (key, value) in enumerate(first.layers):
        keys = key.new_zeros((len(rows), key.shape[0], width, key.shape[2]))
        values = value.new_zeros((len(rows), value.shape[0], width, value.shape[2]))
        for row, (entry, n) in enumerate(rows):
            if entry is not None:
                entry_keys, entry_values = entry.layers[index]
                keys[row, :, width - n :] = entry_keys[:, :n]
                values[row, :, width - n :] = entry_values[:, :n]
        layers.append((keys, values))
    return layers


# Both sides of a comparison must be the same kind: a list slice never equals a tuple slice.
Tokens = TypeVar("Tokens", list[int], tuple[int, ...])


def common_prefix(a: Tokens, b: Tokens) -> int:
    """Length of the common prefix of two token sequences of the same type. Slices compare in
    C, so this bisects on them instead of stepping through the tokens in Python."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    low, high = 0, n - 1  # a[:low] == b[:low] holds; a[:high + 1] != b[:high + 1]
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low
