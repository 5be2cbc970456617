"""How many CPU cores this process may use, so thread counts follow the host
instead of fixed numbers tuned on one 2-core machine.

``os.cpu_count()`` counts the machine's cores, not ours: a container pinned to
a cpuset, or `taskset`, gives the process fewer, and ``sched_getaffinity``
sees them. A Kubernetes CPU limit is a quota, not a cpuset: the cgroup's
``cpu.max`` says it (v2), so the smaller of the two wins. A service's
``threads`` setting still overrides all of this (deploy/sizing.py sets it)."""
from __future__ import annotations

import math
import os
from pathlib import Path

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def host_cores(cpu_max: Path = CPU_MAX) -> int:
    """Cores this process may run on at once (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):   # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota(cpu_max)
    if quota is not None:
        cores = min(cores, quota)
    return max(1, cores)


def _cgroup_quota(cpu_max: Path) -> int | None:
    """``cpu.max`` is "<quota> <period>" in µs, or "max <period>" without a limit;
    a 1.5-CPU quota can keep 2 threads busy part of the time, so round up."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None
