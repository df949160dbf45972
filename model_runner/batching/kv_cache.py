"""A left-padded KV cache for the batch scheduler that grows in place instead of by concatenation.

transformers' `DynamicLayer` appends each step's keys and values with `torch.cat`, which copies
the layer's whole cache every decode step: for 16 sequences of ~100 tokens that is 60 copies of
~1 MB per step, and the fresh allocations above glibc's mmap threshold page-fault on every step.
Measured on the default model (SmolLM2-135M, 16 rows, float32, 1 thread): `aten::cat` was a
quarter of the decode step. A `SlabLayer` keeps keys and values in a buffer with spare columns
on the right and writes each step's column in place; `keys`/`values` are views of the used
part, so the attention kernels see the same shapes as before. The buffer grows by a fixed
number of columns when full (one copy every `_GROW_COLUMNS` steps).

All rows share one length (left padding; the attention mask hides each row's padding), so one
write column serves the whole batch. Row selection, trimming of all-padding columns and merging
two batches happen between steps and rebuild the buffers (`select_rows`, `merge_rows`).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

_GROW_COLUMNS = 64  # spare columns allocated past the used length (decode steps per re-allocation)


class SlabLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """One layer's keys and values in a buffer [rows, heads, capacity, dim], used up to `length`."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.length = 0
        self._key_buf: torch.Tensor | None = None
        self._value_buf: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.dtype, self.device = key_states.dtype, key_states.device
            self.is_initialized = True
        added = key_states.shape[-2]
        end = self.length + added
        if self._key_buf is None or self._value_buf is None or end > self._key_buf.shape[-2]:
            self._reallocate(end + _GROW_COLUMNS, like=(key_states, value_states))
        assert self._key_buf is not None
        assert self._value_buf is not None
        self._key_buf[:, :, self.length : end].copy_(key_states)
        self._value_buf[:, :, self.length : end].copy_(value_states)
        self._set_length(end)
        return self.keys, self.values  # type: ignore[return-value]

    def get_seq_length(self) -> int:
        return self.length

    def replace(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Makes `keys`/`values` (rows, heads, length, dim) the whole content, with spare room."""
        self.length = 0
        self._key_buf = self._value_buf = None
        self.update(keys, values)

    def _reallocate(self, capacity: int, like: tuple[torch.Tensor, torch.Tensor]) -> None:
        new_key, new_value = like
        rows, heads, _, dim = new_key.shape
        key_buf = new_key.new_empty((rows, heads, capacity, dim))
        value_buf = new_value.new_empty((rows, heads, capacity, new_value.shape[-1]))
        if self.length and self._key_buf is not None and self._value_buf is not None:
            key_buf[:, :, : self.length].copy_(self._key_buf[:, :, : self.length])
            value_buf[:, :, : self.length].copy_(self._value_buf[:, :, : self.length])
        self._key_buf, self._value_buf = key_buf, value_buf

    def _set_length(self, length: int) -> None:
        assert self._key_buf is not None
        assert self._value_buf is not None
        self.length = length
        self.keys = self._key_buf[:, :, :length]
        self.values = self._value_buf[:, :, :length]


def new_cache() -> DynamicCache:
    """An empty cache whose layers are `SlabLayer`s (created as the model's layers first write)."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = SlabLayer
    return cache


def cache_of(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    """A cache holding `layers` (per model layer, keys and values [rows, heads, length, dim])."""
    cache = new_cache()
    for keys, values in layers:
        layer = SlabLayer()
        layer.replace(keys, values)
        cache.layers.append(layer)
    return cache


def row_state(cache: DynamicCache, row: int, columns: torch.Tensor) -> list[tuple[Any, Any]]:
    """Copies of one row's keys and values at `columns`, per layer: [heads, columns, dim]."""
    return [
        (
            layer.keys[row].index_select(1, columns),  # type: ignore[index]
            layer.values[row].index_select(1, columns),  # type: ignore[index]
        )
        for layer in _slabs(cache)
    ]


def select_rows(cache: DynamicCache, index: torch.Tensor, start: int = 0) -> None:
    """Keeps the rows in `index` (in that order) and drops the first `start` columns."""
    for layer in _slabs(cache):
        layer.replace(
            layer.keys.index_select(0, index)[:, :, start:],  # type: ignore[union-attr]
            layer.values.index_select(0, index)[:, :, start:],  # type: ignore[union-attr]
        )


def merge_rows(cache: DynamicCache, other: DynamicCache, width: int) -> None:
    """Appends `other`'s rows below `cache`'s, both left-padded with zeros to `width` columns."""
    for layer, new in zip(_slabs(cache), _slabs(other), strict=True):
        layer.replace(
            torch.cat([pad_left(layer.keys, width, 2), pad_left(new.keys, width, 2)]),
            torch.cat([pad_left(layer.values, width, 2), pad_left(new.values, width, 2)]),
        )


def pad_left(tensor: Any, width: int, dim: int) -> Any:
    """`tensor` with zeros prepended along `dim` up to `width` (itself when already as wide)."""
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _slabs(cache: DynamicCache) -> list[SlabLayer]:
    layers = list(cache.layers)
    if not all(isinstance(layer, SlabLayer) for layer in layers):
        raise TypeError("the scheduler's cache must be made by kv_cache.new_cache()")
    return layers  # type: ignore[return-value]
