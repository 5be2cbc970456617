"""Invariant: the quality probes fail a canary whose WER is over the ceiling
or worse than stable's by more than the margin, pass one that is not, and
are inconclusive (never a pass) when a probe could not run; at a check time
the controller joins their checks to the verdict, so an ASR canary that
transcribes worse is rolled back even when its latency is fine."""
from __future__ import annotations

import random

from common.clock import VirtualClock
from release.controller import Controller
from release.judge import FAIL, INCONCLUSIVE, PASS, JudgeConfig, judge
from release.probes import Prober, QualityConfig, Score, quality_check
from release.samples import Sample
from release.store import MemoryReleaseStore

CFG = QualityConfig(max_wer=0.25, wer_margin=0.03)


def test_quality_rules():
    assert quality_check("q", Score(0.05), Score(0.04), CFG).outcome == PASS
    worse = quality_check("q", Score(0.12), Score(0.04), CFG)
    assert worse.outcome == FAIL and worse.limit == 0.04 + 0.03
    ceiling = quality_check("q", Score(0.30), Score(0.29), CFG)
    assert ceiling.outcome == FAIL and ceiling.limit == 0.25
    missing = quality_check("q", Score(None, "ASR c:1: UNAVAILABLE"), Score(0.04), CFG)
    assert missing.outcome == INCONCLUSIVE and "UNAVAILABLE" in missing.detail["why"]


async def test_probes_without_addresses_are_inconclusive():
    [check] = await Prober(tts_canary="", asr_stable="")("tts")
    assert check.outcome == INCONCLUSIVE
    [check] = await Prober()("llm")             # no RAG: the LLM probe has no passages to ask with
    assert check.outcome == INCONCLUSIVE and "RAG" in check.detail["why"]
    assert await Prober()("vad") == []          # no probe for this service


def _side(facts: list[int], claims: list[int] | None = None, why: str = ""):
    from release.llm_probe import Answer, Side

    claims = claims or [0] * len(facts)
    return Side({f"q{i}": Answer(f"question {i}", "answer", f, 2, c)
                 for i, (f, c) in enumerate(zip(facts, claims))}, why)


def test_llm_answers_rule_fails_a_canary_that_states_fewer_facts_or_invents_more():
    from release.llm_probe import LLM_RULE, llm_check

    stable = _side([1, 2, 0, 1, 1, 0, 2, 1, 0, 1])
    same = llm_check(_side([1, 2, 0, 1, 1, 0, 2, 1, 0, 1]), stable)
    assert same.rule == LLM_RULE and same.outcome == PASS and same.value == 0
    one_less = llm_check(_side([1, 2, 0, 1, 1, 0, 2, 1, 0, 0]), stable)
    assert one_less.outcome == PASS                        # within the margin of 2 facts
    worse = llm_check(_side([0, 1, 0, 1, 1, 0, 2, 1, 0, 0]), stable)
    assert worse.outcome == FAIL and worse.value == 3 and worse.detail["canary_missed_facts_in"] == ["q0", "q1", "q9"]
    inventing = llm_check(_side([1, 2, 0, 1, 1, 0, 2, 1, 0, 1], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]), stable)
    assert inventing.outcome == FAIL and inventing.detail["answers_with_unsupported_claims_canary"] == 2
    better = llm_check(_side([2, 2, 2, 2, 2, 2, 2, 2, 2, 2]), stable)
    assert better.outcome == PASS


def test_llm_answers_rule_is_inconclusive_with_too_few_answers_on_either_side():
    from release.llm_probe import llm_check

    down = llm_check(_side([], why="LLM c:1: UNAVAILABLE"), _side([1] * 10))
    assert down.outcome == INCONCLUSIVE and "UNAVAILABLE" in down.detail["why"]
    few = llm_check(_side([1] * 5), _side([1] * 10))
    assert few.outcome == INCONCLUSIVE and few.detail["answered_by_both"] == 5


def test_a_failed_probe_fails_an_otherwise_passing_verdict():
    rnd = random.Random(1)
    samples = [Sample(ts=i, canary=frozenset({"asr"}) if i % 2 else frozenset(),
                      v2v_ms=700 * rnd.lognormvariate(0, 0.1), asr_final_ms=200 * rnd.lognormvariate(0, 0.1),
                      churn=0.0) for i in range(120)]
    assert judge("asr", samples).verdict == PASS
    bad = quality_check("quality:asr_wer", Score(0.2), Score(0.05), CFG)
    v = judge("asr", samples, quality=[bad])
    assert v.verdict == FAIL and v.rule == "quality:asr_wer"
    assert v.record()["checks"][-1]["wer_canary"] == 0.2


async def test_controller_runs_probes_at_check_times_only():
    clock, store = VirtualClock(start=100.0), MemoryReleaseStore()
    calls = []

    async def probe(service):
        calls.append((service, clock.now()))
        return [quality_check("quality:asr_wer", Score(0.2), Score(0.05), CFG)]

    ctl = Controller(store, clock, JudgeConfig(min_samples=20), probe)
    await ctl.start("asr", [5, 100], 60.0, 600.0)
    await clock.advance(30.0, step=1.0)
    assert await ctl.tick() == [] and calls == []        # an early tick costs no probe
    await clock.advance(30.0, step=1.0)
    [ev] = await ctl.tick()
    assert calls == [("asr", 160.0)]
    # No turns at all, but the probe's failure decides: quality needs no traffic.
    assert ev["event"] == "fail" and ev["rule"] == "quality:asr_wer"
    assert (await store.load_all())["asr"].weight == 0.0


def _results(hyps_wrong: set[str], n: int = 40) -> list:
    """Eval results of n short phrases and n long sentences; the named ones misheard."""
    from eval.asr.slices import Result

    out = []
    for i in range(n):
        for kind, secs, text in (("phrase", 0.8, "turn it off"), ("sentence", 5.0, "he was not an ill disposed young man")):
            name = f"{kind}{i}"
            hyp = "turn it of" if name in hyps_wrong and kind == "phrase" else text
            out.append(Result(name, secs, "clean", text, hyp))
    return out


def test_the_slice_probe_fails_a_canary_worse_on_short_phrases_only():
    """eval/asr's paired comparison as a judge check: a canary that mishears
    half the short phrases (overall WER up ~4 points, within the clips
    probe's 5-point margin) fails on the '< 1 s' slice; an identical one passes."""
    from release.probes import SLICES_RULE, slice_check

    stable = _results(set())
    canary = _results({f"phrase{i}" for i in range(0, 40, 2)})
    check = slice_check(stable, canary, QualityConfig())
    assert check.rule == SLICES_RULE and check.outcome == FAIL, check.record()
    assert check.detail["regressions"][0]["slice"] in ("length < 1 s", "rate slow (< 2.2 w/s)",
                                                        "rate medium", "rate fast (> 3.2 w/s)", "all all")
    assert any(r["slice"] == "length < 1 s" for r in check.detail["regressions"])
    v = judge("asr", [], JudgeConfig(min_samples=1), [check])
    assert v.verdict == FAIL and "worse on" in v.reason and "< 1 s" in v.reason
    same = slice_check(stable, _results(set()), QualityConfig())
    assert same.outcome == PASS and same.value == 0.0


async def test_llm_probe_retrieves_with_the_gateways_k_and_floor(monkeypatch):
    """The probe's passages are the ones the gateway would give the LLM: its
    k and score floor (release run: from GATEWAY_RAG_K and GATEWAY_RAG_MIN_SCORE)."""
    import release.llm_probe as llm_probe
    from release.__main__ import _parser

    asked = []

    async def passages_for(rag, qs, k, min_score):
        asked.append((rag, len(qs), k, min_score))
        return "no passages in this test"

    monkeypatch.setattr(llm_probe, "passages_for", passages_for)
    prober = Prober(llm_stable="s:1", llm_canary="c:1", rag="r:1",
                    cfg=QualityConfig(llm_questions=4, rag_k=5, rag_min_score=0.45))
    [check] = await prober("llm")
    assert check.outcome == INCONCLUSIVE and asked == [("r:1", 4, 5, 0.45)]

    monkeypatch.setenv("GATEWAY_RAG_K", "4")
    monkeypatch.setenv("GATEWAY_RAG_MIN_SCORE", "0.25")
    args = _parser().parse_args(["run", "--probes"])
    assert (args.rag_k, args.rag_min_score) == (4, 0.25)
    assert _parser().parse_args(["run", "--rag-k", "2"]).rag_k == 2
