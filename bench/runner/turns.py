"""A chat's later turns: time to first token with the transformers prefix store off and on.

    uv run python -m bench.runner.turns                 # 8 turns, 64-token replies
    uv run python -m bench.runner.turns --turns 12 --max-tokens 128

Every turn sends the whole conversation again, the model's own earlier replies included. The
bare transformers backend (the default model, the runner's default threads and dtype) runs the
chat with the prefix store off (`prefix_cache_mb=0`), then a fresh backend runs it with the
store on (the default size). Replies are greedy; they can still differ between the two runs
where reuse changes the rounding of a near-tie (bfloat16), so each run's prompt length is
printed. Per turn: prompt tokens, TTFT off and on, the prompt tokens the store supplied, the
ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass

from bench.runner.__main__ import DEFAULT_MODEL
from model_runner.backends.base import ModelSpec, SequenceParams
from model_runner.backends.transformers_backend import TransformersBackend
from model_runner.domain import Conversation, Message, SamplingParams
from model_runner.settings import RunnerSettings

QUESTIONS = (
    "Tell me about the ocean.",
    "Why is it salty?",
    "What lives at the bottom of it?",
    "How deep is the deepest part?",
    "Who went there first?",
    "What did they find?",
    "Could people live down there?",
    "Summarize what we talked about.",
    "What should I read to learn more?",
    "Thank you. One more question: why are waves different sizes?",
    "And tides?",
    "Goodbye.",
)


@dataclass(frozen=True, slots=True)
class Turn:
    prompt_tokens: int
    ttft_s: float
    cached_tokens: int
    reply: str


async def _turn(backend: TransformersBackend, messages: list[Message], max_tokens: int) -> Turn:
    start = time.perf_counter()
    ids = await backend.tokenize_conversation(Conversation(tuple(messages)))
    params = SequenceParams(ids, max_tokens, SamplingParams(temperature=0.0), 0)
    first = 0.0
    cached = 0
    text: list[str] = []
    async for step in backend.generate(params):
        if not first:
            first = time.perf_counter()
            cached = step.cached_prompt_tokens
        text.append(step.text)
    return Turn(len(ids), first - start, cached, "".join(text))


async def _chat(prefix_cache_mb: int, turns: int, max_tokens: int) -> list[Turn]:
    settings = RunnerSettings(backend="transformers", prefix_cache_mb=prefix_cache_mb)
    backend = TransformersBackend(settings)
    await backend.load(ModelSpec(DEFAULT_MODEL, None))
    try:
        await _turn(backend, [Message("user", "Hello!")], 4)  # warm-up, as the runner's
        messages: list[Message] = []
        results: list[Turn] = []
        for i in range(turns):
            messages.append(Message("user", QUESTIONS[i % len(QUESTIONS)]))
            turn = await _turn(backend, messages, max_tokens)
            results.append(turn)
            messages.append(Message("assistant", turn.reply))
        return results
    finally:
        await backend.unload()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runner.turns", description=__doc__)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, model {DEFAULT_MODEL}")
    off = asyncio.run(_chat(0, args.turns, args.max_tokens))
    on = asyncio.run(_chat(RunnerSettings().prefix_cache_mb, args.turns, args.max_tokens))
    header = ("turn", "prompt tok off/on", "TTFT off ms", "TTFT on ms", "cached")
    print("{:>4} {:>17} {:>12} {:>11} {:>7}".format(*header))
    for i, (a, b) in enumerate(zip(off, on, strict=True), 1):
        print(
            f"{i:>4} {a.prompt_tokens:>8} /{b.prompt_tokens:>7} {a.ttft_s * 1000:>12.0f} "
            f"{b.ttft_s * 1000:>11.0f} {b.cached_tokens:>7}  {a.ttft_s / b.ttft_s:.1f}x"
        )
    total_off = sum(t.ttft_s for t in off)
    total_on = sum(t.ttft_s for t in on)
    print(f"sum of TTFT: off {total_off:.2f} s, on {total_on:.2f} s ({total_off / total_on:.1f}x)")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
