"""Continuous batching for the llamacpp backend: one thread decodes every live sequence.

llama.cpp decodes several sequences in one `llama_decode` call when each token of the batch
names its sequence (`seq_id`): the context keeps one KV cache stream per sequence slot
(`n_seq_max` slots, each `n_ctx / n_seq_max` tokens: the context is created with
`kv_unified = false`). `BatchDecoder` owns the context and runs one loop on its own thread
(the context is not thread-safe):

    take joins and leaves -> one batch: the next token of every decoding sequence, then prompt
    chunks of joining ones (at most n_batch tokens) -> llama_decode -> sample each sequence
    that got logits -> hand its token to the sequence's asyncio queue

Sequences join between decode steps (when a slot is free; the rest wait in arrival order) and
leave when they end (end-of-generation, a stop token, max_tokens) or when their reader goes
away (`leave()`, from the backend iterator's `finally`). A sequence that left by cancellation
has its KV cells removed at the next step. One that ended normally keeps them as a prefix
cache: a new sequence takes the free slot whose cache its prompt continues and only prefills
the rest (follow-up turns of one chat stay cheap); otherwise an empty slot, so that another
chat's cache survives; only when none is empty, the slot sharing the longest prefix. When
another slot (a finished chat's cache or a running sequence) holds a longer prefix of the
prompt than the chosen slot, as chats that share a system prompt do, llama.cpp copies that
slot's cells into the chosen one and only the rest of the prompt is prefilled.

Each sequence samples with its own llama.cpp sampler chain (the same chain llama-cpp-python's
`Llama` builds, so greedy is argmax and seeded sampling is reproducible per sequence).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from model_runner.backends.base import SequenceParams
from model_runner.batching.prefix_cache import common_prefix

logger = logging.getLogger(__name__)

_PENALTY_LAST_N = 64  # as llama-cpp-python's `Llama` (last_n_tokens_size)
# A prompt "continues" a slot's cache when it shares all but this many of the cached tokens
# (and at least half of them): the last generated token is never decoded into the cache, and
# a reply tokenized again in the next turn's prompt can differ from the sampled ids near its
# end.
_CONTINUATION_SLACK = 16
# A new sequence copies another slot's cells when they hold at least this many more of its
# prompt's leading tokens than its own slot does (chats that share a system prompt).
_MIN_COPIED_PREFIX = 16


class SequenceEnded:
    """Queue marker: the model ended the sequence (EOG or a stop token), which is not output."""


ENDED = SequenceEnded()
# What a sequence's queue receives: a sampled token id, ENDED, or the error that ended it.
QueueItem = int | SequenceEnded | BaseException


@dataclass(frozen=True, slots=True)
class BatchStats:
    """Counters since load: how many `llama_decode` calls ran and how many sequence-steps they
    carried (a decode that advances 3 sequences counts 1 call, 3 steps). `max_sequences` is
    the most sequences one call carried; above 1 means sequences shared decode calls."""

    decode_calls: int = 0
    sequence_steps: int = 0
    max_sequences: int = 0


@dataclass(eq=False, slots=True)
class Sequence:
    """One generation as the decode thread sees it; created on the event loop."""

    params: SequenceParams
    deliver: Callable[[QueueItem], None]  # thread-safe: posts onto the reader's queue
    slot: int = -1
    pending: list[int] = field(default_factory=list)  # prompt tokens not yet decoded
    n_past: int = 0  # tokens of this sequence in its slot's KV cache
    last_token: int = -1  # sampled, not yet decoded
    produced: int = 0
    # Prompt tokens found in the KV cache (its own slot's or a copied prefix); the backend
    # reports it as the first step's `cached_prompt_tokens`.
    reused: int = 0
    kv_tokens: list[int] = field(default_factory=list)  # the tokens in the KV cache, in order
    sampler: Any = None


class BatchDecoder:
    """Owns a llama.cpp context with `n_seq_max` sequence slots and decodes them in batches.

    `join` and `leave` are called on the event loop; everything that touches the context runs
    on the decoder's thread. `close()` stops the thread and frees the context.
    """

    def __init__(self, llama_cpp: Any, model: Any, context: Any, *, n_batch: int) -> None:
        self._lib = llama_cpp
        self._model = model
        self._context = context
        self._ctx = context.ctx
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._n_seq_max = int(llama_cpp.llama_n_seq_max(self._ctx))
        self._n_batch = n_batch
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._cond = threading.Condition()
        self._joining: deque[Sequence] = deque()
        self._leaving: list[Sequence] = []
        self._active: list[Sequence] = []
        self._free_slots = list(range(self._n_seq_max))
        self._slot_cache: dict[int, list[int]] = {}  # free slot -> tokens still in its cells
        self._held = False
        self._stopping = False
        self._stats = BatchStats()
        self._thread = threading.Thread(target=self._run, name="llamacpp-decode", daemon=True)
        self._thread.start()

    @property
    def n_seq_max(self) -> int:
        return self._n_seq_max

    @property
    def stats(self) -> BatchStats:
        return self._stats

    def waiting(self) -> int:
        """Sequences joined but not yet decoding (no free slot yet, or not yet taken)."""
        with self._cond:
            return len(self._joining)

    def hold(self, held: bool) -> None:
        """While held, no decode step starts (joins still queue). Tests use it to line
        sequences up so that they provably share decode calls."""
        with self._cond:
            self._held = held
            self._cond.notify()

    def join(self, sequence: Sequence) -> None:
        with self._cond:
            if self._stopping:
                raise RuntimeError("the llama.cpp decoder is closed")
            self._joining.append(sequence)
            self._cond.notify()

    def leave(self, sequence: Sequence) -> None:
        """The reader is gone: the sequence stops at the next step and its cells are freed."""
        with self._cond:
            if sequence in self._joining:
                self._joining.remove(sequence)
                _free_sampler(self._lib, sequence)
                return
            self._leaving.append(sequence)
            self._cond.notify()

    def close(self) -> None:
        """Stops the thread (ending live sequences with an error) and frees the batch."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        self._lib.llama_batch_free(self._batch)

    # -- the decode thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (
                    self._held or not (self._active or self._joining or self._leaving)
                ):
                    self._cond.wait()
                if self._stopping:
                    break
                leaving, self._leaving = self._leaving, []
            for sequence in leaving:
                self._drop(sequence, keep_cells=False)
            with self._cond:
                joining: list[Sequence] = []
                while self._joining and len(self._free_slots) > len(joining):
                    joining.append(self._joining.popleft())
            for sequence in joining:
                self._start(sequence)
            if self._active:
                self._step()
        closed = RuntimeError("the model was unloaded")
        for sequence in list(self._active):
            sequence.deliver(closed)
            self._drop(sequence, keep_cells=False)
        for sequence in self._joining:
            sequence.deliver(closed)

    def _start(self, sequence: Sequence) -> None:
        prompt = list(sequence.params.prompt_token_ids)
        slot = self._pick_slot(prompt)
        self._free_slots.remove(slot)
        cached = self._slot_cache.pop(slot, [])
        reuse = common_prefix(cached, prompt)
        donor, shared = self._donor(prompt)
        if shared >= reuse + _MIN_COPIED_PREFIX:
            # llama.cpp copies the donor's whole KV stream into this slot at the start of the
            # next decode; the cells past the shared prefix are removed below. A copy of a
            # stream (~47 MB for the default model) takes milliseconds, prefilling the shared
            # tokens (a system prompt) took ~200 ms on the default model.
            self._lib.llama_memory_seq_cp(self._memory, donor, slot, -1, -1)
            reuse = shared
        # Reuse the common prefix, but decode at least the last prompt token: it gives logits.
        reuse = min(reuse, len(prompt) - 1)
        self._lib.llama_memory_seq_rm(self._memory, slot, reuse, -1)
        sequence.slot = slot
        sequence.reused = reuse
        sequence.n_past = reuse
        sequence.kv_tokens = prompt[:reuse]
        sequence.pending = prompt[reuse:]
        sequence.sampler = _sampler_chain(self._lib, self._model, sequence.params)
        self._active.append(sequence)

    def _pick_slot(self, prompt: list[int]) -> int:
        """The free slot for a new sequence: the one whose cache the prompt continues (the next
        turn of the same chat), else an empty one, else the one sharing the longest prefix.

        Chats that share only a template or system prompt must not take each other's slots
        while one is empty: that saved a few dozen tokens of prefill now and cost the evicted
        chat its whole prefix at its next turn.
        """
        continued = empty = longest = -1
        continued_common = longest_common = -1
        for slot in self._free_slots:
            cached = self._slot_cache.get(slot)
            if not cached:
                if empty < 0:
                    empty = slot
                continue
            common = common_prefix(cached, prompt)
            if common > longest_common:
                longest, longest_common = slot, common
            continues = common >= max(len(cached) - _CONTINUATION_SLACK, len(cached) // 2, 1)
            if continues and common > continued_common:
                continued, continued_common = slot, common
        for slot in (continued, empty, longest):
            if slot >= 0:
                return slot
        raise RuntimeError("no free slot")  # callers only start a sequence when one is free

    def _donor(self, prompt: list[int]) -> tuple[int, int]:
        """Of the other slots (running sequences, free slots' caches), the one whose cells
        share the longest prefix with `prompt`, and that length."""
        donor, shared = -1, 0
        candidates = [(s.slot, s.kv_tokens) for s in self._active]
        candidates += self._slot_cache.items()
        for slot, tokens in candidates:
            common = common_prefix(tokens, prompt)
            if common > shared:
                donor, shared = slot, common
        return donor, shared

    def _drop(self, sequence: Sequence, *, keep_cells: bool) -> None:
        if sequence not in self._active:
            return  # already ended on its own
        self._active.remove(sequence)
        _free_sampler(self._lib, sequence)
        if keep_cells:
            self._slot_cache[sequence.slot] = sequence.kv_tokens
        else:
            self._lib.llama_memory_seq_rm(self._memory, sequence.slot, -1, -1)
        self._free_slots.append(sequence.slot)

    def _step(self) -> None:
        """One llama_decode over every active sequence, then one token for each that got
        logits."""
        batch = self._batch
        n = 0
        carried = 0
        outputs: list[tuple[Sequence, int]] = []
        for sequence in self._active:  # decoding sequences first: they never wait for prompts
            if not sequence.pending and n < self._n_batch:
                n = self._add(batch, n, sequence, [sequence.last_token], logits=True)
                outputs.append((sequence, n - 1))
                carried += 1
        for sequence in self._active:
            if sequence.pending and n < self._n_batch:
                chunk = sequence.pending[: self._n_batch - n]
                del sequence.pending[: len(chunk)]
                n = self._add(batch, n, sequence, chunk, logits=not sequence.pending)
                carried += 1
                if not sequence.pending:
                    outputs.append((sequence, n - 1))
        batch.n_tokens = n
        rc = self._lib.llama_decode(self._ctx, batch)
        stats = self._stats
        self._stats = replace(
            stats,
            decode_calls=stats.decode_calls + 1,
            sequence_steps=stats.sequence_steps + carried,
            max_sequences=max(stats.max_sequences, carried),
        )
        if rc != 0:
            error = RuntimeError(f"llama_decode failed (code {rc})")
            logger.error("llama_decode returned %d with %d sequences", rc, len(self._active))
            for sequence in list(self._active):
                sequence.deliver(error)
                self._drop(sequence, keep_cells=False)
            return
        for sequence, index in outputs:
            self._sample(sequence, index)

    def _add(
        self, batch: Any, n: int, sequence: Sequence, tokens: list[int], *, logits: bool
    ) -> int:
        for i, token in enumerate(tokens):
            batch.token[n] = token
            batch.pos[n] = sequence.n_past + i
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = sequence.slot
            batch.logits[n] = False
            n += 1
        batch.logits[n - 1] = logits
        sequence.n_past += len(tokens)
        sequence.kv_tokens.extend(tokens)
        return n

    def _sample(self, sequence: Sequence, index: int) -> None:
        params = sequence.params
        token = int(self._lib.llama_sampler_sample(sequence.sampler, self._ctx, index))
        is_end = token in params.stop_token_ids or (
            not params.ignore_eos and self._lib.llama_vocab_is_eog(self._model.vocab, token)
        )
        if is_end:
            sequence.deliver(ENDED)
            self._drop(sequence, keep_cells=True)
            return
        sequence.deliver(token)
        sequence.produced += 1
        sequence.last_token = token
        if sequence.produced >= params.max_tokens:
            self._drop(sequence, keep_cells=True)


def _sampler_chain(lib: Any, model: Any, params: SequenceParams) -> Any:
    """The sampler chain llama-cpp-python's `Llama` builds, with llama.cpp's defaults for
    unset fields (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05)."""
    s = params.sampling
    temp = 0.8 if s.temperature is None else s.temperature
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())

    def add(sampler: Any) -> None:
        lib.llama_sampler_chain_add(chain, sampler)

    add(
        lib.llama_sampler_init_penalties(
            model.n_vocab(),
            _PENALTY_LAST_N,
            1.0 if s.repetition_penalty is None else s.repetition_penalty,
            s.frequency_penalty or 0.0,
            s.presence_penalty or 0.0,
        )
    )
    if temp == 0.0:
        add(lib.llama_sampler_init_greedy())
        return chain
    add(lib.llama_sampler_init_top_k(40 if s.top_k is None else s.top_k))
    add(lib.llama_sampler_init_top_p(0.95 if s.top_p is None else s.top_p, 1))
    add(lib.llama_sampler_init_min_p(0.05 if s.min_p is None else s.min_p, 1))
    add(lib.llama_sampler_init_temp(temp))
    add(lib.llama_sampler_init_dist(ctypes.c_uint32(params.seed & 0xFFFFFFFF).value))
    return chain


def _free_sampler(lib: Any, sequence: Sequence) -> None:
    if sequence.sampler is not None:
        lib.llama_sampler_free(sequence.sampler)
        sequence.sampler = None


def poster(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[QueueItem]
) -> Callable[[QueueItem], None]:
    """A thread-safe `deliver` for a sequence whose reader awaits `queue` on `loop`."""

    def deliver(item: QueueItem) -> None:
        # A closed loop has no reader left to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, item)

    return deliver
