"""What the capacity run reads from the host while users talk: each service
process's CPU time and resident memory (from /proc when the pids are known,
else from the process collector on its /metrics), and the services' own
metrics (stage latencies, queue depths, in-flight streams).

Why both: /proc is the ground truth for a stack this run started (it also
sees Redis, which exports no metrics); a stack `make run` started is only
reachable through its /metrics ports, whose process_* series say the same."""
from __future__ import annotations

import dataclasses
import os
import threading
import urllib.request
from typing import Callable

from prometheus_client.parser import text_string_to_metric_families

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

Series = dict[tuple[str, frozenset], float]        # (sample name, labels) -> value


@dataclasses.dataclass(frozen=True)
class ProcUse:
    cpu_s: float       # user + system CPU seconds since the process started
    rss: int           # resident bytes now


def read_proc(pid: int, root: str = "/proc") -> ProcUse:
    with open(f"{root}/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime, stime are fields 14, 15
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    with open(f"{root}/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * PAGE
    return ProcUse(cpu, rss)


def scrape(address: str, timeout: float = 5.0) -> Series:
    """Every sample of http://address/metrics; empty when it cannot be read
    (a missing figure is reported as missing, never as zero load)."""
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return parse(text)


def parse(text: str) -> Series:
    """Every sample of a Prometheus text exposition (ValueError if it does not parse)."""
    out: Series = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def total(series: Series, name: str, **labels: str) -> float:
    """Sum of ``name`` over every label set that includes ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in series.items() if n == name and want <= ls)


def label_values(series: Series, name: str, label: str) -> set[str]:
    return {dict(ls)[label] for (n, ls) in series if n == name and label in dict(ls)}


def proc_use_from_metrics(series: Series) -> ProcUse | None:
    if not series:
        return None
    return ProcUse(total(series, "process_cpu_seconds_total"), int(total(series, "process_resident_memory_bytes")))


class Usage:
    """CPU and memory of named processes over a window: CPU as the difference
    between the window's ends, memory as the peak of samples taken every
    ``every_s`` (a step's peak, not whatever it was at the last instant)."""

    def __init__(self, readers: dict[str, Callable[[], ProcUse | None]], every_s: float = 2.0) -> None:
        self.readers, self.every_s = readers, every_s
        self.start: dict[str, ProcUse] = {}
        self.end: dict[str, ProcUse] = {}
        self.peak_rss: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> dict[str, ProcUse]:
        out = {}
        for name, read in self.readers.items():
            try:
                u = read()
            except OSError:      # the process is gone: its figures stay missing
                u = None
            if u is not None:
                out[name] = u
                self.peak_rss[name] = max(self.peak_rss.get(name, 0), u.rss)
        return out

    def __enter__(self) -> "Usage":
        self.start = self.read()
        self._thread = threading.Thread(target=self._loop, name="usage", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.read()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self.end = self.read()

    def cpu_s(self) -> dict[str, float]:
        return {n: self.end[n].cpu_s - self.start[n].cpu_s for n in self.end if n in self.start}
