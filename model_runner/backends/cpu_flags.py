"""What the CPU says it can do (Linux: the `flags` line of /proc/cpuinfo), for the backends'
`auto` choices. Empty where the file is missing (other systems): every auto choice then takes
its conservative side."""

from __future__ import annotations

import functools


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()
