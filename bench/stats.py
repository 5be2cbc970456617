"""Small helpers every benchmark shares: percentiles and a service's peak memory."""
from __future__ import annotations

from pathlib import Path


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 1]."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a running process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
