"""The SLO gate at the end of a load run: the run fails (non-zero exit) when
voice-to-voice p95, the failed-turn ratio or barge-in reaction p95 break
their thresholds.

The defaults are observability/slo.py's numbers (one source for alerts and
load tests): voice-to-voice p95 ≤ 1.2 s, no failed turn, barge-in reaction
p95 ≤ 300 ms (issue #11's capacity target). Percentiles come from the
unrounded samples the locustfile writes (LOAD_SAMPLES): Locust's own CSV
rounds 1150 ms to 1200, which would pass a run that broke the SLO."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import Iterable

from observability import slo


@dataclasses.dataclass(frozen=True)
class Thresholds:
    v2v_p95_ms: float = slo.VOICE_TO_VOICE_TARGET_S * 1000
    failed_turn_ratio: float = slo.FAILED_TURN_RATIO_CAPACITY
    barge_in_p95_ms: float = slo.BARGE_IN_P95_CAPACITY_S * 1000


@dataclasses.dataclass(frozen=True)
class Sample:
    name: str
    ms: float
    ok: bool
    code: str | None = None
    t: float = 0.0
    users: int = 0


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool
    lines: list[str]          # one per check, with the measured value and the threshold
    figures: dict[str, float]


def add_flags(p: argparse.ArgumentParser) -> None:
    d = Thresholds()
    p.add_argument("--slo-v2v-p95-ms", type=float, default=d.v2v_p95_ms,
                   help=f"fail when voice-to-voice p95 is above this (default {d.v2v_p95_ms:g})")
    p.add_argument("--slo-failed-turn-ratio", type=float, default=d.failed_turn_ratio,
                   help=f"fail when failed/all turns is above this (default {d.failed_turn_ratio:g})")
    p.add_argument("--slo-barge-in-p95-ms", type=float, default=d.barge_in_p95_ms,
                   help=f"fail when barge-in reaction p95 is above this (default {d.barge_in_p95_ms:g})")


def thresholds(a: argparse.Namespace) -> Thresholds:
    return Thresholds(a.slo_v2v_p95_ms, a.slo_failed_turn_ratio, a.slo_barge_in_p95_ms)


def read_samples(path: Path) -> list[Sample]:
    if not path.exists():
        return []
    fields = {f.name for f in dataclasses.fields(Sample)}
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            out.append(Sample(**{k: v for k, v in d.items() if k in fields}))
    return out


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (NaN for no values): the value q % of samples
    do not exceed, never an interpolation between two turns."""
    v = sorted(values)
    if not v:
        return math.nan
    return v[max(0, math.ceil(q / 100 * len(v)) - 1)]


def figures(samples: list[Sample]) -> dict[str, float]:
    ok = lambda n: [s.ms for s in samples if s.name == n and s.ok]  # noqa: E731
    turns = [s for s in samples if s.name == "turn"]
    failed = sum(not s.ok for s in turns)
    return {
        "v2v_p50_ms": percentile(ok("voice_to_voice"), 50),
        "v2v_p95_ms": percentile(ok("voice_to_voice"), 95),
        "transcript_p95_ms": percentile(ok("final_transcript"), 95),
        "barge_in_p95_ms": percentile(ok("barge_in_reaction"), 95),
        "turns": float(len(turns)),
        "failed_turns": float(failed),
        "failed_turn_ratio": failed / len(turns) if turns else math.nan,
        "barge_ins": float(len(ok("barge_in_reaction"))),
        "refused_connects": float(sum(1 for s in samples if s.name == "connect" and not s.ok)),
        # questions about the documents (loadtests/doc_questions.py), when the mix has them
        "doc_turns": float(len(ok("doc/voice_to_voice"))),
        "doc_v2v_p50_ms": percentile(ok("doc/voice_to_voice"), 50),
        "doc_v2v_p95_ms": percentile(ok("doc/voice_to_voice"), 95),
        "doc_llm_turns": float(len(ok("doc/llm_first_token"))),   # completed, not cut: the server's timings
        "doc_llm_first_token_p50_ms": percentile(ok("doc/llm_first_token"), 50),
        "doc_llm_first_token_p95_ms": percentile(ok("doc/llm_first_token"), 95),
    }


def judge(samples: list[Sample], th: Thresholds = Thresholds()) -> Verdict:
    """Pass only when turns ran and every figure is within its threshold; no
    barge-in in the run leaves that check out (said so), never passes it silently."""
    f = figures(samples)
    lines, ok = [], True
    if not f["turns"]:
        return Verdict(False, ["no turn completed: nothing to judge"], f)
    codes = sorted({s.code or "?" for s in samples if s.name == "turn" and not s.ok})
    checks = [("voice_to_voice p95", f["v2v_p95_ms"], th.v2v_p95_ms, "ms"),
              ("failed turns", f["failed_turn_ratio"], th.failed_turn_ratio, ""),
              ("barge_in_reaction p95", f["barge_in_p95_ms"], th.barge_in_p95_ms, "ms")]
    for name, value, limit, unit in checks:
        if math.isnan(value):
            good = name != "voice_to_voice p95"          # no answer at all fails
            lines.append(f"{'ok  ' if good else 'FAIL'} {name}: not measured (no samples)")
            ok &= good
            continue
        good = value <= limit
        ok &= good
        shown = (f"{value:.0f} ms (limit {limit:.0f} ms)" if unit else
                 f"{value:.1%} of {f['turns']:.0f} (limit {limit:.1%}){' ' + ', '.join(codes) if codes else ''}")
        lines.append(f"{'ok  ' if good else 'FAIL'} {name}: {shown}")
    return Verdict(ok, lines, f)
