"""Gateway benchmark: N concurrent streams through the backend (WebSocket, SSE, /v1) next to
the same streams sent straight to the runner (`direct`, the baseline), in the same run.

    uv run python -m bench.gateway            # full: 1/32/128/512 streams, 50 tok/s and max
    uv run python -m bench.gateway --quick    # 1 and 32 streams, 64 tokens (a smoke run)

For each model pace a fresh runner (fake backend) and backend process are started on free
ports. Reported per path and load: TTFT p50/p99 and the TTFT the backend adds over `direct`,
p99 inter-token gap as the client sees it, tokens/s, and CPU-ms per 1,000 tokens of the
backend process and of the runner process (/proc/<pid>/stat user + system time).

The clients share the machine with what they measure, so they are kept light and their own
load is reported (`bench client % of a core`): the process runs on uvloop, as the backend does,
and SSE and /v1 are read by `bench.gateway.sse_client` (httptools' C parser, no await per
event) rather than httpx, which used 85-93 % of a core for 512 streams of 50 tokens/s and so
set the gaps it reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import uvloop
from websockets.asyncio.client import ClientConnection, connect

from bench.gateway.calibration import calibrate
from bench.gateway.clients import (
    StreamFn,
    StreamTiming,
    direct_stream,
    sse_stream,
    v1_stream,
    ws_stream,
)
from bench.gateway.report import (
    RunFigures,
    cpu_ms,
    figures,
    goals,
    table,
    tree_cpu_ms,
    worker_scaling,
)
from bench.gateway.sse_client import SseClient
from model_runner.client import GrpcRunnerClient
from tests.support.accounts import signed_in
from tests.support.backend_process import BackendProcess
from tests.support.runner_process import RunnerProcess, start_runner
from tests.support.workers import serving_workers

PATHS = ("direct", "ws", "sse", "v1")
_STREAM_TIMEOUT_S = 180


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.gateway", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 32 streams, 64 tokens")
    parser.add_argument("--streams", type=int, nargs="+", help="concurrency levels")
    parser.add_argument("--tokens", type=int, help="tokens per stream (default 256)")
    parser.add_argument("--paces", type=float, nargs="+", help="fake tok/s; 0 = full speed")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument(
        "--step-clocks",
        nargs="+",
        choices=("shared", "per_stream"),
        default=["shared"],
        help="how the fake model paces its streams: shared (they step together, as in a "
        "batching engine; default) or per_stream (one timer per stream, a harder load)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1],
        help="backend worker processes, e.g. 1 2 (more than one uses the Redis hub at "
        "BENCH_REDIS_URL, default redis://127.0.0.1:6379/0)",
    )
    parser.add_argument(
        "--single-rounds",
        type=int,
        default=5,
        help="1 stream is run this many times one after another, so its TTFT p50 is a median "
        "and not one sample (default 5)",
    )
    args = parser.parse_args(argv)
    args.streams = args.streams or ([1, 32] if args.quick else [1, 32, 128, 512])
    args.tokens = args.tokens or (64 if args.quick else 256)
    args.paces = args.paces if args.paces is not None else [50.0, 0.0]
    return args


def _pace_name(pace: float) -> str:
    return f"{pace:g} tok/s" if pace else "full speed"


@contextlib.contextmanager
def _services(  # type: ignore[no-untyped-def]
    pace: float, tokens: int, max_streams: int, data_dir: Path, workers: int, step_clock: str
):
    slots = str(max(max_streams, 1) + 8)
    runner: RunnerProcess = start_runner(
        "--fake-tokens-per-second",
        f"{pace:g}",
        "--fake-step-clock",
        step_clock,
        "--fake-reply-tokens",
        str(tokens),
        "--max-running",
        slots,
        "--max-queued",
        slots,
        "--log-level",
        "WARNING",
    )
    env = {
        "WEBUI_CHAT_MESSAGES_PER_MINUTE": "0",
        "WEBUI_TITLE_GENERATION": "false",
        **_worker_env(workers, data_dir),
    }
    try:
        with serving_workers(runner.address, data_dir, env, workers=workers) as backend:
            yield runner, backend
    finally:
        runner.stop()


def _worker_env(workers: int, data_dir: Path) -> dict[str, str]:
    if workers <= 1:
        return {}
    return {
        "WEBUI_WORKERS": str(workers),
        "WEBUI_REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        # A prefix of its own, so a run never meets another run's (or a test's) keys.
        "WEBUI_REDIS_PREFIX": f"bench-gateway-{data_dir.name}-{os.getpid()}:",
    }


@contextlib.asynccontextmanager
async def _sockets(
    backend: BackendProcess, headers: dict[str, str], n: int
) -> AsyncIterator[list[ClientConnection]]:
    async with contextlib.AsyncExitStack() as stack:
        sockets = await asyncio.gather(
            *(
                stack.enter_async_context(
                    connect(
                        backend.ws_url,
                        additional_headers=headers,
                        max_size=None,
                        compression=None,
                        open_timeout=60,
                        ping_interval=None,
                    )
                )
                for _ in range(n)
            )
        )
        yield list(sockets)


async def _run_streams(
    streams: list[StreamFn], rounds: int = 1
) -> tuple[list[StreamTiming], float]:
    """Runs `streams` all at once, `rounds` times one after another (the same stream functions
    again); returns every timing and the wall time of all rounds."""
    timings: list[StreamTiming] = []
    wall_s = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        async with asyncio.timeout(_STREAM_TIMEOUT_S):
            timings += await asyncio.gather(*(stream() for stream in streams))
        wall_s += time.perf_counter() - started
    return timings, wall_s


async def _measure(
    path: str,
    streams: list[StreamFn],
    *,
    mode: str,
    runner: RunnerProcess,
    backend: BackendProcess | None,
    rounds: int,
) -> RunFigures:
    runner_before = cpu_ms(runner.pid)
    backend_before = tree_cpu_ms(backend.service.pid) if backend else 0.0
    client_before = cpu_ms(os.getpid())
    timings, wall_s = await _run_streams(streams, rounds)
    backend_cpu = tree_cpu_ms(backend.service.pid) - backend_before if backend else None
    runner_cpu = cpu_ms(runner.pid) - runner_before
    # For `direct` the benchmark's own gRPC client is what a backend would pay to receive the
    # stream: reported in the backend column, in parentheses.
    own_cpu = cpu_ms(os.getpid()) - client_before
    client_cpu = own_cpu if backend is None else None
    client_core_pct = own_cpu / wall_s / 10 if wall_s > 0 else float("nan")
    result = figures(
        mode,
        path,
        timings,
        wall_s,
        backend_cpu,
        runner_cpu,
        client_cpu,
        streams=len(streams),
        client_core_pct=client_core_pct,
    )
    for timing in timings:
        if timing.error:
            print(f"  {path}: stream error: {timing.error}", file=sys.stderr)
            if backend is not None:
                print("".join(backend.service.output[-20:]), file=sys.stderr)
            break
    print(
        f"  {mode:>10} {len(streams):>4} x {path:<6} TTFT p50 {result.ttft_p50_ms:7.1f} ms  "
        f"gap p99 {result.gap_p99_ms:7.1f} ms  {result.tokens_per_s:9,.0f} tok/s  "
        f"backend {result.backend_cpu_ms_per_1k or 0:6.1f} CPU-ms/1k  "
        f"(this client {client_core_pct:.0f} % of a core)",
        flush=True,
    )
    return result


async def _one_pace(
    args: argparse.Namespace, pace: float, data_dir: Path, workers: int, step_clock: str
) -> list[RunFigures]:
    mode = _pace_name(pace) + (f" · {workers} workers" if workers > 1 else "")
    if pace and step_clock != "shared":
        mode += " · per-stream timers"
    rows: list[RunFigures] = []
    with _services(pace, args.tokens, max(args.streams), data_dir, workers, step_clock) as (
        runner,
        backend,
    ):
        print(f"{mode}: runner pid {runner.pid}, backend pid {backend.service.pid}", flush=True)
        account = await signed_in(backend)
        api_key = await account.create_api_key("bench")
        direct = GrpcRunnerClient(runner.address, default_timeout_s=_STREAM_TIMEOUT_S)
        host, _, port = backend.service.address.rpartition(":")
        http = SseClient(host, int(port), account.headers)
        v1 = SseClient(host, int(port), {"Authorization": f"Bearer {api_key}"})
        try:
            # Warm-up: channels, connection pools, the model catalog, SQLite pages.
            await _run_streams([direct_stream(direct, 4), sse_stream(http, 4), v1_stream(v1, 4)])
            for n in args.streams:
                rounds = args.single_rounds if n == 1 else 1
                for path in args.paths:
                    if path == "ws":
                        async with _sockets(backend, account.headers, n) as sockets:
                            streams = [ws_stream(ws, args.tokens) for ws in sockets]
                            rows.append(
                                await _measure(
                                    path,
                                    streams,
                                    mode=mode,
                                    runner=runner,
                                    backend=backend,
                                    rounds=rounds,
                                )
                            )
                        continue
                    if path == "direct":
                        streams = [direct_stream(direct, args.tokens) for _ in range(n)]
                    elif path == "sse":
                        await http.open(n)
                        streams = [sse_stream(http, args.tokens) for _ in range(n)]
                    else:
                        await v1.open(n)
                        streams = [v1_stream(v1, args.tokens) for _ in range(n)]
                    rows.append(
                        await _measure(
                            path,
                            streams,
                            mode=mode,
                            runner=runner,
                            backend=None if path == "direct" else backend,
                            rounds=rounds,
                        )
                    )
        finally:
            await direct.close()
            await http.aclose()
            await v1.aclose()
    return rows


async def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    command = "uv run python -m bench.gateway " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"$ {command.strip()}", flush=True)
    slowest = min((p for p in args.paces if p), default=50.0)
    machine = calibrate(slowest).describe(slowest)
    print(machine, flush=True)
    started = time.perf_counter()
    rows: list[RunFigures] = []
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        for i, pace in enumerate(args.paces):
            # Full speed has no clock to share: one pass covers it.
            for step_clock in args.step_clocks if pace else args.step_clocks[:1]:
                for workers in args.workers:
                    data_dir = Path(tmp) / f"data-{i}-{workers}-{step_clock}"
                    rows += await _one_pace(args, pace, data_dir, workers, step_clock)
    print()
    print(machine)
    print()
    print(table(rows))
    print()
    model_gap_ms = 1000 / min((p for p in args.paces if p), default=50.0)
    for line in goals(rows, model_gap_ms):
        print(f"- {line}")
    for line in worker_scaling(rows):
        print(f"- workers: {line}")
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    # uvloop, as the backend runs: the client's own event loop should cost what a server's does.
    uvloop.run(main())
