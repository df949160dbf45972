"""The scheduler's in-place KV cache against transformers' concatenating `DynamicLayer`."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from model_runner.batching import kv_cache


def _states(rows: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    keys = torch.randn((rows, 3, length, 8), generator=generator)
    values = torch.randn((rows, 3, length, 8), generator=generator)
    return keys, values


def _layer(cache: DynamicCache) -> tuple[torch.Tensor, torch.Tensor]:
    layer = cache.layers[0]
    assert isinstance(layer, kv_cache.SlabLayer)
    assert layer.keys is not None
    assert layer.values is not None
    return layer.keys, layer.values


def test_decode_steps_write_in_place_and_match_dynamic_layer() -> None:
    slab, reference = kv_cache.SlabLayer(), DynamicLayer()  # type: ignore[no-untyped-call]
    prompt = _states(4, 5, seed=0)
    slab.update(*prompt)
    reference.update(*prompt)
    buffer = slab.keys._base  # type: ignore[union-attr]
    for step in range(10):
        new = _states(4, 1, seed=step + 1)
        keys, values = slab.update(*new)
        expected_keys, expected_values = reference.update(*new)
        assert torch.equal(keys, expected_keys)
        assert torch.equal(values, expected_values)
    assert slab.get_seq_length() == 15
    assert slab.keys._base is buffer  # type: ignore[union-attr]  # no reallocation within the spare room


def test_cache_grows_past_its_spare_columns() -> None:
    slab = kv_cache.SlabLayer()
    slab.update(*_states(2, 3, seed=0))
    first_buffer = slab.keys._base  # type: ignore[union-attr]
    steps = [_states(2, 1, seed=i + 1) for i in range(70)]
    for keys, values in steps:
        slab.update(keys, values)
    assert slab.keys._base is not first_buffer  # type: ignore[union-attr]
    assert slab.get_seq_length() == 73
    assert torch.equal(slab.keys[:, :, 3:], torch.cat([k for k, _ in steps], dim=2))  # type: ignore[index]


def test_select_rows_and_merge_rows_keep_left_padding() -> None:
    cache, other = kv_cache.new_cache(), kv_cache.new_cache()
    a_keys, a_values = _states(3, 6, seed=0)
    b_keys, b_values = _states(2, 4, seed=1)
    cache.update(a_keys, a_values, 0)
    other.update(b_keys, b_values, 0)

    kv_cache.select_rows(cache, torch.tensor([2, 0]), start=1)
    keys, values = _layer(cache)
    assert torch.equal(keys, a_keys[[2, 0], :, 1:])
    assert torch.equal(values, a_values[[2, 0], :, 1:])

    kv_cache.merge_rows(cache, other, width=5)
    keys, _ = _layer(cache)
    assert keys.shape == (4, 3, 5, 8)
    assert torch.equal(keys[:2], a_keys[[2, 0], :, 1:])
    assert torch.equal(keys[2:, :, :1], torch.zeros((2, 3, 1, 8)))  # the shorter side padded
    assert torch.equal(keys[2:, :, 1:], b_keys)
    # The merged cache still decodes in place.
    step = _states(4, 1, seed=2)
    cache.update(*step, 0)
    assert torch.equal(_layer(cache)[1][:, :, -1:], step[1])
