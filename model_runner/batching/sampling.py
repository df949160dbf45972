"""Per-sequence sampling over one batch of logits (torch), run on the engine thread.

Each row of a batch may have its own temperature, top-k, top-p, min-p, penalties and seed, so
greedy rows take one batched argmax and sampling rows are processed row by row (cheap next to
the forward pass). Unset fields take the model's generation config; with none, greedy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from model_runner.domain import SamplingParams


@dataclass(frozen=True, slots=True)
class ModelDefaults:
    """The sampling settings of the model's generation config (None = not set there)."""

    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None

    @classmethod
    def from_generation_config(cls, config: Any) -> ModelDefaults:
        if config is None:
            return cls()
        return cls(
            do_sample=bool(getattr(config, "do_sample", False)),
            temperature=getattr(config, "temperature", None),
            top_p=getattr(config, "top_p", None),
            top_k=getattr(config, "top_k", None),
            min_p=getattr(config, "min_p", None),
            repetition_penalty=getattr(config, "repetition_penalty", None),
        )


class RowSampler:
    """The resolved sampling settings and random state of one sequence."""

    __slots__ = (
        "counts",
        "frequency_penalty",
        "generator",
        "greedy",
        "min_p",
        "presence_penalty",
        "prompt_ids",
        "repetition_penalty",
        "temperature",
        "top_k",
        "top_p",
    )

    def __init__(
        self,
        params: SamplingParams,
        defaults: ModelDefaults,
        seed: int,
        prompt_ids: list[int],
        device: Any,
    ) -> None:
        import torch

        temperature = params.temperature
        if temperature is None:
            temperature = (defaults.temperature or 1.0) if defaults.do_sample else 0.0
        self.temperature = float(temperature)
        self.greedy = self.temperature <= 0.0
        self.top_k = params.top_k if params.top_k is not None else (defaults.top_k or 0)
        self.top_p = params.top_p if params.top_p is not None else (defaults.top_p or 1.0)
        self.min_p = params.min_p if params.min_p is not None else (defaults.min_p or 0.0)
        rep = params.repetition_penalty
        self.repetition_penalty = rep if rep is not None else (defaults.repetition_penalty or 1.0)
        self.presence_penalty = params.presence_penalty or 0.0
        self.frequency_penalty = params.frequency_penalty or 0.0
        self.prompt_ids = prompt_ids if self.repetition_penalty != 1.0 else []
        self.counts: Counter[int] = Counter()
        self.generator: Any = None
        if not self.greedy:
            self.generator = torch.Generator(device=device).manual_seed(seed & (2**63 - 1))

    @property
    def penalized(self) -> bool:
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )

    def record(self, token_id: int) -> None:
        if self.penalized:
            self.counts[token_id] += 1


def sample_batch(logits: Any, samplers: list[RowSampler]) -> list[int]:
    """One token per row of `logits` ([rows, vocab], float) for the matching samplers."""
    import torch

    logits = logits.float()
    if all(s.greedy and not s.penalized for s in samplers):
        return [int(i) for i in torch.argmax(logits, dim=-1).tolist()]
    out: list[int] = []
    for row, sampler in zip(logits, samplers, strict=True):
        out.append(_sample_row(row, sampler))
    return out


def _sample_row(row: Any, s: RowSampler) -> int:
    import torch

    if s.penalized:
        row = row.clone()
        if s.repetition_penalty != 1.0:
            seen = torch.tensor(sorted(set(s.prompt_ids) | set(s.counts)), device=row.device)
            if seen.numel():
                values = row[seen]
                row[seen] = torch.where(
                    values > 0, values / s.repetition_penalty, values * s.repetition_penalty
                )
        if s.counts and (s.presence_penalty or s.frequency_penalty):
            ids = torch.tensor(list(s.counts), device=row.device)
            counts = torch.tensor(list(s.counts.values()), device=row.device, dtype=row.dtype)
            row[ids] -= s.presence_penalty + s.frequency_penalty * counts
    if s.greedy:
        return int(torch.argmax(row))
    row = row / s.temperature
    if s.top_k and s.top_k < row.numel():
        kth = torch.topk(row, s.top_k).values[-1]
        row = row.masked_fill(row < kth, float("-inf"))
    probs = torch.softmax(row, dim=-1)
    if s.min_p > 0.0:
        probs = probs.masked_fill(probs < s.min_p * probs.max(), 0.0)
    if s.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        # Keep the smallest prefix whose mass reaches top_p (always at least one token).
        drop = cumulative - sorted_probs >= s.top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=s.generator))
