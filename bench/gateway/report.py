"""Turning stream timings into the gateway benchmark's figures and table."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from bench.gateway.clients import StreamTiming

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ms(pid: int) -> float:
    """CPU time (user + system) a process has used so far, in ms (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may hold spaces; the fields after its closing ')' are fixed.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / _TICKS


def tree_cpu_ms(pid: int) -> float:
    """`cpu_ms` of a process and every live descendant (a multi-worker backend is uvicorn's
    supervisor with its workers as children)."""
    total = cpu_ms(pid)
    for child in _children(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += tree_cpu_ms(child)
    return total


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(FileNotFoundError),
                open(f"/proc/{pid}/task/{task}/children") as children,
            ):
                found += [int(c) for c in children.read().split()]
    return found


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True, slots=True)
class RunFigures:
    mode: str
    streams: int
    path: str
    ttft_p50_ms: float
    ttft_p99_ms: float
    gap_p99_ms: float
    tokens: int
    tokens_per_s: float
    backend_cpu_ms_per_1k: float | None
    runner_cpu_ms_per_1k: float
    errors: int
    # `direct` only: the benchmark process's gRPC client, per 1,000 tokens.
    client_cpu_ms_per_1k: float | None = None
    # The benchmark process itself, every path: near 100 % it, not the backend, sets the pace.
    client_core_pct: float = float("nan")


def figures(
    mode: str,
    path: str,
    timings: list[StreamTiming],
    wall_s: float,
    backend_cpu_ms: float | None,
    runner_cpu_ms: float,
    client_cpu_ms: float | None = None,
    streams: int | None = None,
    client_core_pct: float = float("nan"),
) -> RunFigures:
    """`streams`: how many ran at once (default: every timing; a repeated single stream
    passes 1)."""
    ttfts = [t.ttft_s * 1000 for t in timings if t.ttft_s is not None]
    gaps = [g * 1000 for t in timings for g in t.gaps_s()]
    tokens = sum(t.tokens for t in timings)
    per_1k = 1000 / tokens if tokens else float("nan")
    return RunFigures(
        mode=mode,
        streams=len(timings) if streams is None else streams,
        path=path,
        ttft_p50_ms=percentile(ttfts, 50),
        ttft_p99_ms=percentile(ttfts, 99),
        gap_p99_ms=percentile(gaps, 99),
        tokens=tokens,
        tokens_per_s=tokens / wall_s if wall_s > 0 else float("nan"),
        backend_cpu_ms_per_1k=None if backend_cpu_ms is None else backend_cpu_ms * per_1k,
        runner_cpu_ms_per_1k=runner_cpu_ms * per_1k,
        errors=sum(1 for t in timings if t.error is not None),
        client_cpu_ms_per_1k=None if client_cpu_ms is None else client_cpu_ms * per_1k,
        client_core_pct=client_core_pct,
    )


_HEADER = (
    "| model pace | streams | path | TTFT p50 ms | TTFT p99 ms | added TTFT p50 / p99 ms "
    "| gap p99 ms | tokens/s | tokens/s vs direct | backend CPU-ms/1k tok "
    "| runner CPU-ms/1k tok | bench client % of a core | errors |"
)


def table(rows: list[RunFigures]) -> str:
    """A markdown table; each backend path is compared with `direct` at the same load."""
    lines = [_HEADER, "|" + "---|" * (_HEADER.count("|") - 1)]
    baseline = {(r.mode, r.streams): r for r in rows if r.path == "direct"}
    for r in rows:
        base = baseline.get((r.mode, r.streams))
        if base is None or r.path == "direct":
            added = "—"
            ratio = "1.00x" if r.path == "direct" else "—"
        else:
            added = (
                f"{r.ttft_p50_ms - base.ttft_p50_ms:+.1f} / {r.ttft_p99_ms - base.ttft_p99_ms:+.1f}"
            )
            ratio = f"{r.tokens_per_s / base.tokens_per_s:.2f}x" if base.tokens_per_s else "—"
        backend = "—" if r.backend_cpu_ms_per_1k is None else f"{r.backend_cpu_ms_per_1k:.1f}"
        if r.client_cpu_ms_per_1k is not None:
            backend = f"({r.client_cpu_ms_per_1k:.1f} client)"
        lines.append(
            f"| {r.mode} | {r.streams} | {r.path} | {r.ttft_p50_ms:.1f} | {r.ttft_p99_ms:.1f} "
            f"| {added} | {r.gap_p99_ms:.1f} | {r.tokens_per_s:,.0f} | {ratio} | {backend} "
            f"| {r.runner_cpu_ms_per_1k:.1f} | {r.client_core_pct:.0f} | {r.errors} |"
        )
    return "\n".join(lines)


def goals(rows: list[RunFigures], model_gap_ms: float) -> list[str]:
    """The issue's goals, checked against this run."""
    through = [r for r in rows if r.path != "direct"]
    baseline = {(r.mode, r.streams): r for r in rows if r.path == "direct"}
    worst_cpu = max((r.backend_cpu_ms_per_1k or 0.0 for r in through), default=float("nan"))
    paced_512 = [r for r in through if r.mode == "50 tok/s" and r.streams == 512]
    worst_gap = max((r.gap_p99_ms for r in paced_512), default=float("nan"))
    added = [
        r.ttft_p50_ms - baseline[(r.mode, r.streams)].ttft_p50_ms
        for r in through
        if (r.mode, r.streams) in baseline
    ]
    worst_added = max(added, default=float("nan"))

    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    return [
        f"backend CPU-ms per 1,000 tokens ≤ 25: worst {worst_cpu:.1f} ({mark(worst_cpu <= 25)})",
        f"512 x 50 tok/s p99 inter-token gap ≤ {2 * model_gap_ms:.0f} ms: worst "
        f"{worst_gap:.1f} ms ({mark(worst_gap <= 2 * model_gap_ms)})"
        if paced_512
        else "512 x 50 tok/s: not run",
        f"added TTFT p50 ≤ 2 ms: worst {worst_added:+.1f} ms ({mark(worst_added <= 2)})",
    ]


def worker_scaling(rows: list[RunFigures]) -> list[str]:
    """tokens/s with N backend workers over 1 worker, same pace, path and load (the modes of a
    multi-worker run end in " · N workers")."""
    single = {(r.mode, r.streams, r.path): r for r in rows if "workers" not in r.mode}
    lines = []
    for r in rows:
        if "workers" not in r.mode or r.path == "direct":
            continue
        base = single.get((r.mode.split(" · ")[0], r.streams, r.path))
        if base is not None and base.tokens_per_s:
            lines.append(
                f"{r.mode}, {r.streams} x {r.path}: {r.tokens_per_s:,.0f} vs "
                f"{base.tokens_per_s:,.0f} tok/s with 1 worker = "
                f"{r.tokens_per_s / base.tokens_per_s:.2f}x"
            )
    return lines
