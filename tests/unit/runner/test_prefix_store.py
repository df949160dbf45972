"""The prefix store's matching, replacement and byte bound (tensors stand in for a model's)."""

from __future__ import annotations

import torch

from model_runner.batching.prefix_cache import PrefixStore


def _layers(n_tokens: int, n_layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Keys and values of `n_tokens` tokens: 1 head, dim 4, float32 = 16 bytes per token each."""
    return [(torch.zeros(1, n_tokens, 4), torch.zeros(1, n_tokens, 4)) for _ in range(n_layers)]


def _bytes(n_tokens: int, n_layers: int = 2) -> int:
    return n_tokens * 16 * 2 * n_layers


def test_the_longest_shared_prefix_wins_and_the_last_prompt_token_is_never_reused() -> None:
    store = PrefixStore(max_bytes=1 << 20, min_tokens=4)
    store.add(list(range(10)), _layers(10))
    store.add([*range(6), 99, 98, 97, 96], _layers(10))
    entry, reused = store.match([*range(8), 50])
    assert entry is not None
    assert entry.tokens == tuple(range(10))
    assert reused == 8
    # The whole entry matches the prompt: one token is still left to compute.
    _, reused = store.match(list(range(10)))
    assert reused == 9


def test_too_short_a_match_is_no_match() -> None:
    store = PrefixStore(max_bytes=1 << 20, min_tokens=4)
    store.add(list(range(10)), _layers(10))
    assert store.match([0, 1, 2, 50, 51]) == (None, 0)
    assert store.match([7, 8, 9, 10, 11]) == (None, 0)
    assert store.match([0, 1, 2, 3]) == (None, 0)  # 3 reusable tokens at most


def test_a_longer_turn_of_the_same_chat_replaces_the_shorter_one() -> None:
    store = PrefixStore(max_bytes=1 << 20, min_tokens=4)
    store.add(list(range(10)), _layers(10))
    store.add(list(range(20)), _layers(20))
    assert len(store) == 1
    assert store.nbytes == _bytes(20)
    store.add(list(range(15)), _layers(15))  # already covered: nothing new to keep
    assert len(store) == 1
    assert store.nbytes == _bytes(20)


def test_the_least_recently_used_entries_leave_first_to_respect_the_bound() -> None:
    store = PrefixStore(max_bytes=_bytes(25), min_tokens=4)
    first, second, third = ([k * 100 + i for i in range(10)] for k in range(3))
    store.add(first, _layers(10))
    store.add(second, _layers(10))
    assert store.match([*first, 7])[1] == 10  # first is now the most recently used
    store.add(third, _layers(10))
    assert store.nbytes <= _bytes(25)
    assert store.match([*first, 7])[1] == 10
    assert store.match([*second, 7]) == (None, 0)
    assert store.match([*third, 7])[1] == 10
    store.add(list(range(1000, 1030)), _layers(30))  # larger than the whole bound: not kept
    assert store.match([*range(1000, 1030), 7]) == (None, 0)


def test_a_store_of_zero_bytes_is_off() -> None:
    store = PrefixStore(max_bytes=0)
    assert not store.enabled
    store.add(list(range(100)), _layers(100))
    assert len(store) == 0
