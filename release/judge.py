"""The release judge: canary turns against stable turns of the same window,
pure (samples in, a verdict out; no Redis, no clock).

Two kinds of rules, both over per-turn samples (release/samples.py):
- hard thresholds on the canary alone (Flagger-style): turn failure ratio,
  p95 of voice-to-voice and of each stage (ASR final, LLM first token, TTS
  first audio), mean interim churn. They catch a canary that is bad for
  users whatever stable does; but when stable, over the same window, is
  over a latency limit too (the host is slow for everyone), that limit is
  skipped and the comparison below decides, so a release is not blamed for
  the host (``_p95``).
- a statistical comparison with stable (Kayenta-style): a one-sided
  Mann-Whitney U test per compared metric, failing only when the canary is
  slower with significance (p < alpha) *and* by more than the effect-size
  margin (its median over stable's). A tiny but significant difference does
  not roll back a release; a large one that could be chance does not either.

Quality probes (release/probes.py: WER of fixed clips through the canary
ASR, round-trip WER of the canary TTS) come in as ready checks and decide
like any other rule.

A verdict is never "pass" by default: with fewer than ``min_samples`` turns a
rule is inconclusive, and so is an empty or all-NaN series, and so is a
comparison whose sizes could not reach alpha even with every canary turn the
slowest, ties aside (a drill's few turns: ``stats.best_p_greater``); the controller
holds the step then. Failures decide first (any failing rule fails the
verdict), then inconclusive, and only a window where every required rule ran
and passed passes. Each rule's measured values travel in the verdict, for the
event log."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from observability.slo import VOICE_TO_VOICE_TARGET_S
from release import stats
from release.samples import LATENCIES, Sample, split

PASS, FAIL, INCONCLUSIVE, SKIPPED = "pass", "fail", "inconclusive", "skipped"
# A latency limit stable breaks too is left to the comparison only while the
# canary's p95 is within this factor of stable's (generous: a drill judges on
# 3-10 turns, where a p95 is (nearly) the slowest turn; 1900 against 1485 ms seen).
STABLE_OVER_FACTOR = 1.5

# What each service's canary can make slower, compared with stable. Every
# release is judged on voice-to-voice (what users hear); a stage is compared
# only for the service that runs it, since testing metrics a service cannot
# move only adds false alarms.
COMPARED: dict[str, tuple[str, ...]] = {
    "vad": ("v2v_ms",), "rag": ("v2v_ms",),
    "asr": ("v2v_ms", "asr_final_ms"), "llm": ("v2v_ms", "llm_first_token_ms"),
    "tts": ("v2v_ms", "tts_first_audio_ms"),
}


def _default_p95() -> dict[str, float]:
    # v2v: the latency SLO (observability/slo.py). Stages: backstops above the
    # worst medians docs/benchmarks.md measured under 4 parallel streams (ASR
    # EOU->final 737 ms for a 7 s utterance, LLM TTFT p50 365 ms, TTS TTFA p50
    # 616 ms), so only a clearly broken canary trips them on a healthy host.
    return {"v2v_ms": VOICE_TO_VOICE_TARGET_S * 1000.0, "asr_final_ms": 1000.0,
            "llm_first_token_ms": 800.0, "tts_first_audio_ms": 900.0}


@dataclasses.dataclass(frozen=True)
class JudgeConfig:
    min_samples: int = 30              # per variant, per metric, before a rule may pass or fail
    max_failure_ratio: float = 0.05    # canary turns that failed
    fail_fast_failures: int = 5        # this many failures above the ratio fail even below min_samples
    max_p95_ms: dict[str, float] = dataclasses.field(default_factory=_default_p95)
    max_churn: float = 0.5             # mean share of interims that rewrote shown words
    alpha: float = 0.01                # Mann-Whitney significance (one-sided; several metrics are tested)
    margin: float = 0.10               # canary median may exceed stable's by this share


@dataclasses.dataclass
class Check:
    rule: str                  # e.g. "hard:failure_ratio", "hard:p95:v2v_ms", "mann_whitney:v2v_ms"
    outcome: str               # pass | fail | inconclusive | skipped
    value: float | None = None
    limit: float | None = None
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        d: dict[str, Any] = {"rule": self.rule, "outcome": self.outcome}
        for k, v in (("value", self.value), ("limit", self.limit)):
            if v is not None:
                d[k] = _num(v)
        d.update({k: _num(v) for k, v in self.detail.items()})
        return d


@dataclasses.dataclass
class Verdict:
    verdict: str               # pass | fail | inconclusive
    rule: str                  # the rule that decided
    reason: str
    checks: list[Check]
    counts: dict[str, int]     # turns per variant in the window

    def record(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "rule": self.rule, "reason": self.reason, "counts": self.counts,
                "checks": [c.record() for c in self.checks]}


def _num(v: Any) -> Any:
    # JSON has no NaN/inf: the event log says so in words.
    if isinstance(v, float):
        return round(v, 4) if math.isfinite(v) else str(v)
    return v


def judge(service: str, samples: list[Sample], cfg: JudgeConfig = JudgeConfig(),
          quality: list[Check] | None = None) -> Verdict:
    """``quality``: checks of the probes (release/probes.py), judged with the rest."""
    canary, stable = split(samples, service)
    compared = COMPARED.get(service, ("v2v_ms",))
    checks = [_failures(canary, cfg)]
    for metric in LATENCIES:
        checks.append(_p95(metric, canary, cfg, required=metric in compared, stable=stable))
    checks.append(_churn(canary, cfg, required=service == "asr"))
    for metric in compared:
        checks.append(_compare(metric, canary, stable, cfg))
    checks.extend(quality or ())
    counts = {"canary": len(canary), "stable": len(stable)}
    for outcome in (FAIL, INCONCLUSIVE):
        first = next((c for c in checks if c.outcome == outcome), None)
        if first is not None:
            return Verdict(outcome, first.rule, _reason(first), checks, counts)
    return Verdict(PASS, "all", "every rule passed", checks, counts)


def _reason(c: Check) -> str:
    if c.outcome == INCONCLUSIVE:
        return f"{c.rule}: {c.detail.get('why', 'not enough data')}"
    if c.rule.startswith("mann_whitney:"):
        d = c.detail
        return (f"{c.rule}: canary median {d['median_canary']:.0f} ms against stable's {d['median_stable']:.0f} "
                f"(+{c.value:.0%}, margin {c.limit:.0%}), p={d['p']:.2g} < {d['alpha']:g}")
    if c.detail.get("regressions"):
        worst = c.detail["regressions"][0]
        return (f"{c.rule}: canary worse on {len(c.detail['regressions'])} slice(s), worst {worst['slice']} "
                f"(WER {worst['wer_stable']:.1%} -> {worst['wer_canary']:.1%}, margin {_num(c.limit)})")
    d = c.detail
    also = f" (stable's p95 {_num(d['stable_p95'])})" if "stable_p95" in d else ""
    return f"{c.rule}: {_num(c.value)} over the limit {_num(c.limit)}{also}"


def _failures(canary: list[Sample], cfg: JudgeConfig) -> Check:
    n = len(canary)
    failed = sum(1 for s in canary if s.failed)
    ratio = failed / n if n else math.nan
    detail = {"n": n, "failed": failed}
    rule = "hard:failure_ratio"
    if n and failed >= cfg.fail_fast_failures and ratio > cfg.max_failure_ratio:
        return Check(rule, FAIL, ratio, cfg.max_failure_ratio, detail)
    if n < cfg.min_samples:
        return Check(rule, INCONCLUSIVE, ratio, cfg.max_failure_ratio,
                     {**detail, "why": f"{n} canary turns, {cfg.min_samples} needed"})
    return Check(rule, FAIL if ratio > cfg.max_failure_ratio else PASS, ratio, cfg.max_failure_ratio, detail)


def _p95(metric: str, canary: list[Sample], cfg: JudgeConfig, required: bool,
         stable: Sequence[Sample] = ()) -> Check:
    """The canary's p95 against the limit (the SLO), as Flagger's thresholds.
    One exception: when stable, over the same window and with enough turns,
    is over the limit too, the host is slow for everyone and the limit cannot
    tell the release's effect: the check is skipped (``stable_over``) and the
    comparison with stable decides (Mann-Whitney over whole distributions,
    where two p95s of a few turns are each nearly one turn's value), as long
    as the canary's p95 is within ``STABLE_OVER_FACTOR`` of stable's: a tail
    far beyond stable's (some turns many seconds late, medians alike, which
    Mann-Whitney cannot see) still fails on the limit.
    Otherwise no release could ship while the SLO is broken, not even its
    fix, and each would be rolled back with a ticket that blames it."""
    values = stats.clean(getattr(s, metric) for s in canary)
    limit = cfg.max_p95_ms.get(metric)
    rule = f"hard:p95:{metric}"
    if limit is None:
        return Check(rule, SKIPPED, detail={"why": "no limit set"})
    if len(values) < cfg.min_samples:
        return Check(rule, INCONCLUSIVE if required else SKIPPED, None, limit,
                     {"n": len(values), "why": f"{len(values)} canary values, {cfg.min_samples} needed"})
    p95 = stats.percentile(values, 95)
    detail: dict[str, Any] = {"n": len(values)}
    others = stats.clean(getattr(s, metric) for s in stable)
    if others:
        stable_p95 = stats.percentile(others, 95)
        detail.update(stable_p95=stable_p95, stable_n=len(others))
        if len(others) >= cfg.min_samples and stable_p95 > limit and p95 <= STABLE_OVER_FACTOR * stable_p95:
            detail.update(stable_over=True, why=f"stable over the limit too (p95 {stable_p95:.0f}): the host "
                                                "is slow for everyone; the comparison with stable decides")
            return Check(rule, SKIPPED, p95, limit, detail)
    return Check(rule, FAIL if p95 > limit else PASS, p95, limit, detail)


def _churn(canary: list[Sample], cfg: JudgeConfig, required: bool) -> Check:
    values = stats.clean(s.churn for s in canary)
    rule = "hard:interim_churn"
    if len(values) < cfg.min_samples:
        return Check(rule, INCONCLUSIVE if required else SKIPPED, None, cfg.max_churn,
                     {"n": len(values), "why": f"{len(values)} canary values, {cfg.min_samples} needed"})
    mean = sum(values) / len(values)
    return Check(rule, FAIL if mean > cfg.max_churn else PASS, mean, cfg.max_churn, {"n": len(values)})


def _compare(metric: str, canary: list[Sample], stable: list[Sample], cfg: JudgeConfig) -> Check:
    c = stats.clean(getattr(s, metric) for s in canary)
    s = stats.clean(getattr(x, metric) for x in stable)
    rule = f"mann_whitney:{metric}"
    if len(c) < cfg.min_samples or len(s) < cfg.min_samples:
        return Check(rule, INCONCLUSIVE, None, cfg.margin, {
            "n_canary": len(c), "n_stable": len(s),
            "why": f"{len(c)} canary / {len(s)} stable values, {cfg.min_samples} each needed"})
    if (best := stats.best_p_greater(len(c), len(s))) >= cfg.alpha:
        # Below ~5 a side no result could be a failure: a pass would be by default.
        return Check(rule, INCONCLUSIVE, None, cfg.margin, {
            "n_canary": len(c), "n_stable": len(s), "best_p": best,
            "why": f"{len(c)} canary / {len(s)} stable values cannot show a slower canary at alpha "
                   f"{cfg.alpha:g} (p {best:.2g} even if every canary value were the slowest)"})
    mw = stats.mann_whitney_greater(c, s)
    mc, ms = stats.median(c), stats.median(s)
    effect = (mc / ms - 1.0) if ms > 0 else (math.inf if mc > 0 else 0.0)
    detail = {"n_canary": len(c), "n_stable": len(s), "p": mw.p_greater, "alpha": cfg.alpha,
              "median_canary": mc, "median_stable": ms}
    worse = mw.p_greater < cfg.alpha and effect > cfg.margin
    return Check(rule, FAIL if worse else PASS, effect, cfg.margin, detail)
