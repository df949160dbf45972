"""Continuous batching for a transformers causal LM: one engine thread owns the model.

Why our own scheduler: transformers' continuous-batching manager targets paged attention on
GPUs and runs its own thread with its own request queue and output format; on CPU and for our
streaming contract (per-step cancellation, per-request sampling and seeds, UTF-8 hold-back)
a compact scheduler over a left-padded batch and a KV cache that grows in place
(`model_runner.batching.kv_cache`) is simpler and fast enough.

How a step works (all on the engine thread):
1. New requests and cancellations are taken from a lock-protected inbox. Cancelled sequences
   leave the batch: their rows are dropped from the KV cache (memory freed at once).
2. Waiting sequences (up to `max_batch_size` running, and a token budget per step) are
   prefilled together in one left-padded forward pass; each samples its first token (time to
   first token), and their caches are merged into the running batch (left-padding the shorter
   side) so the next step decodes everyone together. A prompt that starts like a sequence seen
   before (the chat's previous turn, a shared system prompt) starts from that sequence's keys
   and values (`model_runner.batching.prefix_cache`) and computes only the rest: its row is
   [padding, reused prefix, padding, new tokens], the mask hiding both paddings.
3. One decode forward pass for the whole running batch: every sequence feeds its last token
   with its own position id; the attention mask hides each row's padding.
4. Outputs of the step (ids, UTF-8-complete text, end) go to the event loop in ONE
   `call_soon_threadsafe` (a prefill's first tokens in one of their own, before the decode
   pass, so that pass does not delay time to first token); finished sequences leave the
   batch (their keys and values kept in the prefix store), and columns that are padding in
   every remaining row are trimmed off the cache.

The event loop never waits on the thread: `submit()` and `cancel()` only take a lock briefly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from model_runner.backends.base import SequenceParams
from model_runner.backends.detokenizer import IncrementalDetokenizer
from model_runner.batching.prefix_cache import PrefixStore, stack_prefixes
from model_runner.batching.sampling import ModelDefaults, RowSampler, sample_batch
from model_runner.batching.sequence import ActiveSequence, Output, deliver
from model_runner.batching.stream import SequenceStream

logger = logging.getLogger(__name__)

_PREFILL_TOKEN_BUDGET = 4096  # padded prompt tokens prefilled in one pass (bounds TTFT spikes)
_DETOK_CONTEXT_TOKENS = 4  # prompt tokens decoded with the first output, for leading spaces


@dataclass(frozen=True, slots=True)
class SchedulerStats:
    """Counters for tests and metrics: how forward passes were shared."""

    running: int  # sequences in the running batch
    waiting: int  # submitted, not yet prefilled
    forward_passes: int  # prefill + decode passes
    decode_passes: int
    decoded_tokens: int  # tokens produced by decode passes (sum of their batch sizes)
    max_decode_batch: int  # the largest batch decoded in one pass so far
    cache_tokens: int  # KV cache length (columns) of the running batch
    cached_prompt_tokens: int  # prompt tokens taken from the prefix store instead of computed
    prefix_cache_bytes: int  # what the prefix store holds


class BatchScheduler:
    """Runs a model with continuous batching on its own thread; see the module docstring."""

    def __init__(
        self,
        *,
        model: Any,
        tokenizer: Any,
        device: Any,
        eos_token_ids: frozenset[int],
        defaults: ModelDefaults,
        max_batch_size: int,
        threads: int = 0,
        prefix_cache_bytes: int = 0,
        name: str = "model-engine",
    ) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._device = device
        self._eos = eos_token_ids
        self._defaults = defaults
        self._max_batch = max_batch_size
        self._threads = threads
        self._cond = threading.Condition()
        self._inbox: deque[tuple[SequenceParams, SequenceStream]] = deque()
        self._cancelled: set[SequenceStream] = set()
        self._stopping = False
        self._waiting: deque[ActiveSequence] = deque()
        self._running: list[ActiveSequence] = []
        self._cache: Any = None
        self._mask: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._forward = 0
        self._decode = 0
        self._decoded_tokens = 0
        self._max_decode_batch = 0
        self._cached_prompt_tokens = 0
        self._prefixes = PrefixStore(prefix_cache_bytes)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread.start()

    def stop(self) -> None:
        """Ends the thread after its current step; open streams end with an error."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()

    def submit(self, params: SequenceParams, stream: SequenceStream) -> None:
        with self._cond:
            if self._stopping:
                raise RuntimeError("the model is being unloaded")
            self._inbox.append((params, stream))
            self._cond.notify()

    def cancel(self, stream: SequenceStream) -> None:
        """Drops the sequence at the next step (idempotent; a finished one is ignored)."""
        with self._cond:
            self._cancelled.add(stream)
            self._cond.notify()

    def stats(self) -> SchedulerStats:
        mask = self._mask
        return SchedulerStats(
            running=len(self._running),
            waiting=len(self._waiting) + len(self._inbox),
            forward_passes=self._forward,
            decode_passes=self._decode,
            decoded_tokens=self._decoded_tokens,
            max_decode_batch=self._max_decode_batch,
            cache_tokens=int(mask.shape[1]) if mask is not None else 0,
            cached_prompt_tokens=self._cached_prompt_tokens,
            prefix_cache_bytes=self._prefixes.nbytes,
        )

    # -- the engine thread ----------------------------------------------------------------

    def _run(self) -> None:
        import torch

        if self._threads:
            torch.set_num_threads(self._threads)
        with torch.inference_mode():
            while self._next_step():
                outputs: list[Output] = []
                try:
                    self._admit(outputs)
                    if outputs and self._running:
                        # First tokens go out now, not after the decode step below: that step
                        # would add a whole forward pass to every new request's TTFT.
                        self._send(outputs)
                        outputs = []
                    if self._running:
                        self._decode_step(outputs)
                except Exception as exc:  # a failed pass fails every sequence it touched
                    logger.exception("forward pass failed")
                    outputs.extend((s.stream, [], "", True, False, exc) for s in self._running)
                    outputs.extend((s.stream, [], "", True, False, exc) for s in self._waiting)
                    self._running, self._cache, self._mask = [], None, None
                    self._waiting.clear()
                self._send(outputs)
        error = RuntimeError("the model was unloaded while this request was running")
        pending = (*self._running, *self._waiting)
        self._send([(s.stream, [], "", True, False, error) for s in pending])
        self._running, self._cache, self._mask = [], None, None
        self._waiting.clear()

    def _next_step(self) -> bool:
        """Takes the inbox and cancellations; sleeps while there is nothing to do."""
        with self._cond:
            while not (self._stopping or self._inbox or self._cancelled or self._running):
                if self._waiting:
                    break
                self._cond.wait()
            if self._stopping:
                return False
            inbox, self._inbox = self._inbox, deque()
            cancelled, self._cancelled = self._cancelled, set()
        for params, stream in inbox:
            if stream not in cancelled:
                self._waiting.append(self._new_seq(params, stream))
        if cancelled:
            self._waiting = deque(s for s in self._waiting if s.stream not in cancelled)
            keep = [i for i, s in enumerate(self._running) if s.stream not in cancelled]
            if len(keep) != len(self._running):
                self._keep_rows(keep)
        return True

    def _new_seq(self, params: SequenceParams, stream: SequenceStream) -> ActiveSequence:
        seq = ActiveSequence(params, stream)
        seq.sampler = RowSampler(
            params.sampling, self._defaults, params.seed, seq.prompt, self._device
        )
        seq.eos_ids = frozenset() if params.ignore_eos else self._eos | params.stop_token_ids
        skip = params.skip_special_tokens
        decode = self._tokenizer.decode

        def detok_decode(ids: Sequence[int]) -> str:
            return str(decode(ids, skip_special_tokens=skip))

        seq.detok = IncrementalDetokenizer(
            detok_decode, context_ids=seq.prompt[-_DETOK_CONTEXT_TOKENS:]
        )
        return seq

    def _admit(self, outputs: list[Output]) -> None:
        """Prefills waiting sequences together and merges them into the running batch."""
        import torch

        from model_runner.batching.kv_cache import new_cache, select_rows

        room = self._max_batch - len(self._running)
        if room <= 0 or not self._waiting:
            return
        group: list[ActiveSequence] = []
        widest = 0  # the most prompt tokens any row of the group computes
        while self._waiting and len(group) < room:
            seq = self._waiting[0]
            self._match(seq)
            widest_next = max(widest, len(seq.prompt) - seq.reused)
            if group and widest_next * (len(group) + 1) > _PREFILL_TOKEN_BUDGET:
                break
            group.append(self._waiting.popleft())
            widest = widest_next
        rows = len(group)
        reused = max(seq.reused for seq in group)  # width of the reused part of the cache
        ids = torch.zeros((rows, widest), dtype=torch.long)
        positions = torch.zeros((rows, widest), dtype=torch.long)
        mask = torch.zeros((rows, reused + widest), dtype=torch.long)
        for row, seq in enumerate(group):
            todo = seq.prompt[seq.reused :]
            n = len(todo)
            ids[row, widest - n :] = torch.tensor(todo, dtype=torch.long)
            positions[row, widest - n :] = torch.arange(seq.reused, seq.reused + n)
            mask[row, reused - seq.reused : reused] = 1
            mask[row, reused + widest - n :] = 1
        ids, mask, positions = (t.to(self._device) for t in (ids, mask, positions))
        cache = self._reused_cache(group, reused) if reused else new_cache()
        out = self._model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self._forward += 1
        tokens = sample_batch(out.logits[:, -1, :], [s.sampler for s in group])  # type: ignore[misc]
        kept: list[int] = []
        for row, seq in enumerate(group):
            # Copied into this batch's cache: holding the entry longer would keep an evicted
            # entry's tensors alive, past the store's bound, for the whole reply.
            seq.prefix = None
            seq.stream.cached_prompt_tokens = seq.reused
            self._cached_prompt_tokens += seq.reused
            if seq.emit(tokens[row], outputs):
                kept.append(row)
            else:
                self._remember(row, seq, cache, mask)
        if not kept:
            return
        if len(kept) != rows:
            index = torch.tensor(kept, device=self._device)
            select_rows(cache, index)
            mask = mask.index_select(0, index)
        self._merge(cache, mask)
        self._running.extend(group[row] for row in kept)

    def _match(self, seq: ActiveSequence) -> None:
        """Looks the sequence's prompt up in the prefix store (once)."""
        if seq.reused < 0:
            seq.prefix, seq.reused = self._prefixes.match(seq.prompt)

    def _reused_cache(self, group: list[ActiveSequence], width: int) -> Any:
        from model_runner.batching.kv_cache import cache_of

        return cache_of(stack_prefixes([(seq.prefix, seq.reused) for seq in group], width))

    def _remember(self, row: int, seq: ActiveSequence, cache: Any, mask: Any) -> None:
        """Keeps a sequence leaving the batch in the prefix store."""
        if not self._prefixes.enabled:
            return
        from model_runner.batching.kv_cache import row_state

        columns = mask[row].nonzero().squeeze(1)
        computed = seq.tokens[: int(columns.numel())]
        self._prefixes.add(computed, row_state(cache, row, columns))

    def _decode_step(self, outputs: list[Output]) -> None:
        import torch

        running = self._running
        ids = torch.tensor([[s.last_token] for s in running], dtype=torch.long)
        positions = torch.tensor([[s.position - 1] for s in running], dtype=torch.long)
        ones = torch.ones((len(running), 1), dtype=torch.long, device=self._device)
        self._mask = torch.cat([self._mask, ones], dim=1)
        out = self._model(
            input_ids=ids.to(self._device),
            attention_mask=self._mask,
            position_ids=positions.to(self._device),
            past_key_values=self._cache,
            use_cache=True,
        )
        self._forward += 1
        self._decode += 1
        self._decoded_tokens += len(running)
        self._max_decode_batch = max(self._max_decode_batch, len(running))
        tokens = sample_batch(out.logits[:, -1, :], [s.sampler for s in running])  # type: ignore[misc]
        keep = [i for i, seq in enumerate(running) if seq.emit(tokens[i], outputs)]
        if len(keep) != len(running):
            self._keep_rows(keep)

    def _merge(self, cache: Any, mask: Any) -> None:
        """Appends prefilled rows to the running batch, left-padding the shorter side."""
        import torch

        from model_runner.batching.kv_cache import merge_rows, pad_left

        if self._cache is None or not self._running:
            self._cache, self._mask = cache, mask
            return
        width = max(self._mask.shape[1], mask.shape[1])
        merge_rows(self._cache, cache, width)
        self._mask = torch.cat([pad_left(self._mask, width, 1), pad_left(mask, width, 1)])

    def _keep_rows(self, keep: list[int]) -> None:
        """Drops every other row from the batch and trims all-padding columns on the left."""
        import torch

        from model_runner.batching.kv_cache import select_rows

        kept = set(keep)
        for row, seq in enumerate(self._running):
            if row not in kept:
                self._remember(row, seq, self._cache, self._mask)
        self._running = [self._running[i] for i in keep]
        if not keep:
            self._cache, self._mask = None, None
            return
        index = torch.tensor(keep, device=self._device)
        mask = self._mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        start = int(used[0]) if used.numel() else 0
        self._mask = mask[:, start:].contiguous()
        select_rows(self._cache, index, start)

    def _send(self, outputs: list[Output]) -> None:
        if outputs and self._loop is not None and not self._loop.is_closed():
            # RuntimeError: the loop closed meanwhile, so nobody is listening any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(deliver, outputs)
