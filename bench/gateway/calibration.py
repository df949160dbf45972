"""What this machine charges before the backend does anything: printed at the top of a run.

The VMs these figures come from differ by 2-3x in speed from one day to the next, and a lone
stream's cost is set less by the backend's code than by what one wake-up from idle costs here.
Two readings, each in a fresh process, make runs from different hosts comparable:

- `wake_floor_us`: CPU charged per wake-up of an asyncio loop that sleeps on a timer at the
  model's pace and does nothing else (uvloop, as the backend runs). A process that receives a
  lone token per wake-up (one stream at 50 tok/s) cannot cost less than this per token.
- `python_loop_ms`: wall time of a fixed pure-Python loop (10 million additions), a yardstick
  for the interpreter's speed on this host.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

_WAKE_PROBE = """
import asyncio, sys, time, uvloop

async def main(pace, n):
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.05)
    before = time.process_time()
    start = loop.time()
    for i in range(n):
        await asyncio.sleep(start + (i + 1) / pace - loop.time())
    print((time.process_time() - before) / n * 1e6)

uvloop.run(main(float(sys.argv[1]), int(sys.argv[2])))
"""

_LOOP_PROBE = """
import time
started = time.perf_counter()
total = 0
for i in range(10_000_000):
    total += i
print((time.perf_counter() - started) * 1000)
"""


@dataclass(frozen=True, slots=True)
class Calibration:
    wake_floor_us: float
    python_loop_ms: float

    def describe(self, pace: float) -> str:
        return (
            f"machine: an idle loop woken by a timer at {pace:g}/s costs {self.wake_floor_us:.0f} "
            f"CPU-us per wake-up; 10M Python additions take {self.python_loop_ms:.0f} ms"
        )


def _probe(source: str, *args: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", source, *args], capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip())


def calibrate(pace: float = 50.0, wakes: int = 150) -> Calibration:
    """Both readings (about `wakes / pace` seconds, 3 s at the defaults)."""
    return Calibration(
        wake_floor_us=_probe(_WAKE_PROBE, f"{pace:g}", str(wakes)),
        python_loop_ms=_probe(_LOOP_PROBE),
    )
