"""The machine readings printed at the top of a gateway run."""

from __future__ import annotations

from bench.gateway.calibration import calibrate


def test_calibration_reads_a_wake_floor_and_a_loop_time() -> None:
    machine = calibrate(pace=200, wakes=20)
    assert 0 < machine.wake_floor_us < 100_000  # per wake-up, well under a 5 ms interval
    assert machine.python_loop_ms > 0
    assert "per wake-up" in machine.describe(200)
