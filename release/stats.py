"""The statistics the judge needs, in plain Python (scipy is not a dependency
of the project and these are a few lines each): cleaning a series of NaN and
missing values, a nearest-rank percentile, the median, and the one-sided
Mann-Whitney U test with the normal approximation (tie-corrected, with
continuity correction), which is what Kayenta's judge runs on canary and
baseline series. The approximation is close for the sample sizes the judge
requires (it refuses to compare fewer than ``min_samples`` per side)."""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable


def clean(values: Iterable[float | None]) -> list[float]:
    """Finite numbers only: a turn without that stage (None) or a NaN from a
    broken exporter is not a measurement."""
    return [float(v) for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for an empty series."""
    if not values:
        return math.nan
    s = sorted(values)
    k = max(0, math.ceil(q / 100.0 * len(s)) - 1)
    return s[min(k, len(s) - 1)]


def median(values: list[float]) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


@dataclasses.dataclass(frozen=True)
class MannWhitney:
    u: float        # U of the first sample (canary)
    z: float
    p_greater: float  # P(a sample of the first series tends to be larger) by chance


def _ranks(values: list[float]) -> tuple[list[float], float]:
    """Average ranks (1-based) of ``values`` and the tie term sum(t^3 - t)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties = 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    return ranks, ties


def mann_whitney_greater(a: list[float], b: list[float]) -> MannWhitney:
    """One-sided test that ``a`` is stochastically greater than ``b`` (for
    latencies: the canary is slower). Both series must be non-empty."""
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        raise ValueError("both series need at least one value")
    ranks, ties = _ranks(list(a) + list(b))
    r1 = sum(ranks[:n1])
    u1 = r1 - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    mean = n1 * n2 / 2.0
    var = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        # Every value equal: no evidence of any difference.
        return MannWhitney(u1, 0.0, 1.0)
    z = (u1 - mean - 0.5) / math.sqrt(var)
    return MannWhitney(u1, z, 0.5 * math.erfc(z / math.sqrt(2.0)))


def best_p_greater(n1: int, n2: int) -> float:
    """The smallest p ``mann_whitney_greater`` can give for these sizes
    without ties: every value of the first series above every value of the
    second. When even that is not below alpha, the test cannot find the
    first series greater, however much greater it is. (Ties inside each
    series shrink the variance and can give a smaller p; latencies are
    stored to 0.1 ms, so the bound is a conservative one: at worst a hold.)"""
    if n1 < 1 or n2 < 1:
        return 1.0
    return mann_whitney_greater([float(n2 + i) for i in range(n1)], [float(i) for i in range(n2)]).p_greater
