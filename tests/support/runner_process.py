"""Start a real model-runner process (fake backend by default) on a free port for tests."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from tests.support.processes import ServiceProcess, start_process

_LISTENING = re.compile(r"^model-runner listening on ([\w.:-]+):(\d+)$", re.M)
_READY = re.compile(r"^model-runner ready: ", re.M)

RunnerProcess = ServiceProcess


def start_runner(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 30,
    wait_ready: bool = True,
) -> RunnerProcess:
    """Starts `model-runner serve --host 127.0.0.1 --port 0 [args]` and returns once it listens
    (and, with `wait_ready`, once its model is loaded and health is SERVING).

    `args` are extra CLI flags, e.g. `"--max-running", "1"`; the backend defaults to `fake`.
    Raises RuntimeError with the process output if it does not come up within `timeout_s`.
    """
    command = [sys.executable, "-m", "model_runner.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", "0", *args]
    if "--backend" not in args:
        command += ["--backend", "fake"]
    return start_process(
        command,
        listening=_LISTENING,
        ready=_READY if wait_ready else None,
        env=env,
        timeout_s=timeout_s,
        name="model-runner",
    )


@contextmanager
def running_runner(
    *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 30
) -> Iterator[RunnerProcess]:
    """`start_runner` as a context manager that stops the process (by PID) at the end."""
    runner = start_runner(*args, env=env, timeout_s=timeout_s)
    try:
        yield runner
    finally:
        runner.stop()
