"""Watching a multi-worker `webui-backend serve` (uvicorn's supervisor) through its output."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.support.backend_process import BackendProcess, start_backend
from tests.support.processes import ServiceProcess

# One line per worker whose lifespan finished (and one more per replacement worker).
STARTUP_COMPLETE = re.compile(r"Application startup complete")
# Logged by each worker's Redis hub: its worker id (a turn's `worker` in Redis) and its pid.
HUB_WORKER = re.compile(r"redis hub: worker (\w+) in process (\d+)")
# uvicorn's supervisor noticing a dead worker (it starts a replacement next).
WORKER_DIED = re.compile(r"Child process \[(\d+)\] died")


def wait_for_lines(
    service: ServiceProcess, pattern: re.Pattern[str], count: int, timeout_s: float = 120
) -> list[re.Match[str]]:
    """Wait until `count` output lines match `pattern`; return the matches. Raises
    AssertionError with the output's tail when the process exits or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        matches = [m for line in list(service.output) if (m := pattern.search(line))]
        if len(matches) >= count:
            return matches
        exited = service.process.poll()
        if exited is not None or time.monotonic() > deadline:
            why = f"exited with {exited}" if exited is not None else f"not within {timeout_s} s"
            tail = "".join(service.output[-60:])
            raise AssertionError(f"{count} x {pattern.pattern!r}: {why}\n{tail}")
        time.sleep(0.05)


def hub_worker_pids(service: ServiceProcess) -> dict[str, int]:
    """The pid of each worker that has started so far, by its hub worker id."""
    return {
        m.group(1): int(m.group(2))
        for line in list(service.output)
        if (m := HUB_WORKER.search(line))
    }


@contextlib.contextmanager
def serving_workers(
    runner_address: str, data_dir: Path, env: Mapping[str, str], *, workers: int = 2
) -> Iterator[BackendProcess]:
    """`webui-backend serve` with `env` (WEB_CONCURRENCY / WEBUI_WORKERS and Redis among it);
    yields once `workers` workers finished their start-up, signed in. The supervisor binds the
    port before any worker runs, so the port alone says nothing."""
    process = start_backend(
        runner_address=runner_address, data_dir=data_dir, env=env, sign_in=False, timeout_s=120
    )
    try:
        wait_for_lines(process.service, STARTUP_COMPLETE, workers)
        process.sign_in()
        yield process
    finally:
        process.stop()
