"""Start a server process for a test and wait, on its own output, until it is up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class ServiceProcess:
    """A child process whose combined stdout/stderr is read for its whole life."""

    process: subprocess.Popen[str]
    host: str
    port: int
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def send_signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout_s: float = 30) -> int:
        """Waits for the process to exit; returns its exit code."""
        code = self.process.wait(timeout=timeout_s)
        self._close_output()
        return code

    def kill(self) -> None:
        """SIGKILL: a crash, no cleanup."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self._close_output()

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM (graceful), then SIGKILL if it has not exited after `timeout_s`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._close_output()
        return self.process.returncode

    def _close_output(self) -> None:
        # The reader sees EOF once the process is gone; then the pipe can be closed.
        if self.reader is not None:
            self.reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_process(
    command: Sequence[str],
    *,
    listening: re.Pattern[str],
    ready: re.Pattern[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 30,
    name: str = "service",
) -> ServiceProcess:
    """Start `command`; return once a line matches `listening` (groups: host, port) and, when
    given, a later line matches `ready`. Raises RuntimeError with the output otherwise."""
    process = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    output: list[str] = []
    bound: list[tuple[str, int]] = []
    came_up = threading.Event()

    def drain() -> None:
        # Keep reading for the whole life of the process so its pipe never fills up.
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = listening.search(line)
            if match and not bound:
                bound.append((match.group(1), int(match.group(2))))
                if ready is None:
                    came_up.set()
            elif ready is not None and bound and ready.search(line):
                came_up.set()
        came_up.set()  # exited: stop waiting

    reader = threading.Thread(target=drain, name=f"{name}-{process.pid}-output", daemon=True)
    reader.start()
    came_up.wait(timeout=timeout_s)
    if not bound or process.poll() is not None or not came_up.is_set():
        ServiceProcess(process, "", 0, output, reader).kill()
        raise RuntimeError(f"{name} did not start:\n" + "".join(output[-50:]))
    host, port = bound[0]
    return ServiceProcess(process, host, port, output, reader)
