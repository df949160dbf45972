"""Runner benchmark: TTFT and tokens/s at 1, 4, 16 concurrent chats, runner vs bare engine.

    make bench-runner                     # every local backend, the default model, CPU
    uv run python -m bench.runner --concurrency 1 4 16 --max-tokens 64 --backends transformers

For each backend (transformers; llamacpp when its extra is installed, on the packaged GGUF of
the same model): first the bare engine (the backend object in this process, no gRPC, no
engine) runs `--single` requests one at a time after one untimed warm-up request: their median
TTFT and tokens/s are the single-stream baseline. Then a real runner process (gRPC, engine,
admission) serves, after a warm-up, the same `--single` requests one at a time (level 1), and
N chats at once for every other level N. Every request is a different prompt ("Write a long,
detailed story about ..."), greedy, `--max-tokens` long; TTFT includes templating and
tokenizing on both sides. Printed ratios: aggregate tokens/s through the runner / bare
single-stream tokens/s (goal at 16: >= 6x), and runner TTFT / bare TTFT (goal at 1: <= 1.10);
at the end, each backend's aggregate at the top level against llama.cpp's single stream.
Thread and dtype settings are the runner's own defaults unless RUNNER_* variables say
otherwise; llama.cpp gets `n_seq_max` = the top level so that it batches all chats.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import time
from dataclasses import dataclass

from model_runner.backends.base import Backend, ModelSpec, SequenceParams
from model_runner.client import ChatMessage, GenerationOptions, GrpcRunnerClient, StreamDelta
from model_runner.domain import Conversation, Message, SamplingParams
from model_runner.models.default_model import SMOLLM2, locate_packaged_gguf
from model_runner.settings import RunnerSettings
from tests.support.runner_process import running_runner

DEFAULT_MODEL = "smollm2-135m-instruct"
TOPICS = (
    "the ocean",
    "a lighthouse keeper",
    "the history of bread",
    "a trip to the mountains",
    "how bridges are built",
    "a cat who learns to code",
    "the moon landing",
    "winter in a small village",
    "a robot gardener",
    "the invention of the printing press",
    "a day at a busy train station",
    "why the sky is blue",
    "a dragon who is afraid of heights",
    "the life of a honeybee",
    "an old library at night",
    "a chess tournament",
)


@dataclass(frozen=True, slots=True)
class Result:
    ttft_s: list[float]
    tokens: int
    wall_s: float

    @property
    def ttft_ms(self) -> float:
        # The median: one request that lands on a busy moment of a shared VM moved the mean
        # of four by up to 40 % between runs (docs/benchmarks.md).
        return statistics.median(self.ttft_s) * 1000

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s


def prompt(i: int) -> str:
    return f"Write a long, detailed story about {TOPICS[i % len(TOPICS)]}."


def model_source(backend_name: str) -> str | None:
    """The default model for every backend: llama.cpp reads the packaged GGUF itself."""
    return str(locate_packaged_gguf(SMOLLM2)) if backend_name == "llamacpp" else None


async def bare(backend_name: str, n: int, max_tokens: int) -> Result:
    """The backend object directly, `n` requests one at a time after an untimed warm-up."""
    from model_runner.backends import create_backend

    settings = RunnerSettings(backend=backend_name, model=DEFAULT_MODEL)
    backend: Backend = create_backend(settings, backend_name)
    await backend.load(ModelSpec(DEFAULT_MODEL, model_source(backend_name)))
    try:
        ttfts: list[float] = []
        tokens = 0
        wall = 0.0
        for i in range(-1, n):  # -1: the warm-up, as the runner gets one
            conversation = Conversation((Message("user", prompt(max(i, 0))),))
            start = time.perf_counter()
            ids = await backend.tokenize_conversation(conversation)
            params = SequenceParams(ids, max_tokens, SamplingParams(temperature=0.0), 0)
            first = 0.0
            count = 0
            async for step in backend.generate(params):
                if not first:
                    first = time.perf_counter()
                count += len(step.token_ids)
            if i >= 0:
                wall += time.perf_counter() - start
                ttfts.append(first - start)
                tokens += count
        return Result(ttfts, tokens, wall)
    finally:
        await backend.unload()


async def through_runner(address: str, concurrency: int, max_tokens: int, rounds: int) -> Result:
    """`rounds` times `concurrency` chats at once (prompts 0, 1, ... in order)."""
    client = GrpcRunnerClient(address, default_timeout_s=600, connect_timeout_s=10)
    options = GenerationOptions(temperature=0.0, max_tokens=max_tokens)

    async def one(i: int) -> tuple[float, int]:
        start = time.perf_counter()
        first = 0.0
        count = 0
        async for event in client.chat_stream([ChatMessage("user", prompt(i))], options=options):
            if isinstance(event, StreamDelta):
                if not first:
                    first = time.perf_counter()
                count = event.completion_tokens
        return first - start, count

    results: list[tuple[float, int]] = []
    wall = 0.0
    try:
        for r in range(rounds):
            start = time.perf_counter()
            batch = range(r * concurrency, (r + 1) * concurrency)
            results += await asyncio.gather(*(one(i) for i in batch))
            wall += time.perf_counter() - start
    finally:
        await client.close()
    return Result([t for t, _ in results], sum(c for _, c in results), wall)


async def bench_backend(
    name: str, levels: list[int], max_tokens: int, single: int
) -> tuple[Result, Result]:
    """Prints the backend's table; returns its bare baseline and its top-level result."""
    top = max(levels)
    env = {k: v for k, v in os.environ.items() if k.startswith("RUNNER_")}
    print(f"\n== backend {name}, model {DEFAULT_MODEL}, settings {env}")
    baseline = await bare(name, single, max_tokens)
    print(f"{'chats':>18} {'TTFT ms':>8} {'tok/s':>8} {'x bare tok/s':>13} {'TTFT/bare':>10}")
    print(f"{'bare, 1 at a time':>18} {baseline.ttft_ms:>8.0f} {baseline.tokens_per_s:>8.1f}")
    args = ["--backend", name, "--model", DEFAULT_MODEL, "--max-running", str(top)]
    if (source := model_source(name)) is not None:
        args += ["--model-source", source]
    result = baseline
    with running_runner(*args, timeout_s=600) as runner:
        await through_runner(runner.address, 1, 4, 1)  # warm the connection and the model
        for level in levels:
            result = await through_runner(runner.address, level, max_tokens, single // level or 1)
            print(
                f"{level:>18} {result.ttft_ms:>8.0f} {result.tokens_per_s:>8.1f} "
                f"{result.tokens_per_s / baseline.tokens_per_s:>12.2f}x "
                f"{result.ttft_ms / baseline.ttft_ms:>10.2f}"
            )
    return baseline, result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runner", description=__doc__)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--single", type=int, default=8, help="requests for the single-stream figures"
    )
    parser.add_argument("--backends", nargs="+", default=None, help="default: every local one")
    args = parser.parse_args()
    backends = args.backends or ["transformers"] + (
        ["llamacpp"] if importlib.util.find_spec("llama_cpp") is not None else []
    )
    load = os.getloadavg()[0]
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.2f}, "
        f"max_tokens {args.max_tokens}"
    )
    levels = sorted(args.concurrency)
    # llama.cpp batches at most n_seq_max sequences (default 4): let it take every chat.
    os.environ.setdefault("RUNNER_LLAMACPP_N_SEQ_MAX", str(levels[-1]))
    results = {
        name: asyncio.run(bench_backend(name, levels, args.max_tokens, args.single))
        for name in backends
    }
    if "llamacpp" in results:
        reference = results["llamacpp"][0]
        print(f"\nllama.cpp single stream (bare): {reference.tokens_per_s:.1f} tokens/s")
        for name, (_, result) in results.items():
            if name != "llamacpp":
                print(
                    f"{name} at {levels[-1]} chats: {result.tokens_per_s:.1f} tokens/s = "
                    f"{result.tokens_per_s / reference.tokens_per_s:.2f}x llama.cpp single stream"
                )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
