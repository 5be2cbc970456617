"""Quality probes that need no live traffic: the same fixed inputs through
the canary and through stable, scored by word error rate (clients/wer.py).

- ASR: the project's real clips (tests/data/speech, with reference texts)
  transcribed by the canary ASR and by the stable ASR (``quality:asr_wer``);
  and the evaluation set of ``make eval`` (eval/asr: the clips and the 174
  short phrases cut from them) through both, compared slice by slice with
  eval's own paired bootstrap (``quality:asr_slices``): a canary that is
  worse on short commands or fast speech fails even when its overall WER
  is within the margin (Whisper tiny.en against base: eval-asr.md).
- TTS round trip (release/tts_probe.py): fixed sentences synthesized by the
  canary TTS and by the stable TTS, each transcribed back by the *stable*
  ASR (so only the voice differs), compared sentence by sentence with the
  same paired bootstrap: a voice that mumbles or skips words shows as a
  higher WER beyond Piper's sampling noise.
- LLM answers (release/llm_probe.py): questions of the answer eval asked of
  the canary and the stable LLM with the same retrieved passages, greedy,
  scored by key facts stated and unsupported claims (``quality:llm_answers``).

``quality_check``, ``slice_check`` and ``roundtrip_check`` are pure (scores in,
judge checks out); ``Prober`` does the
gRPC calls, at BACKGROUND priority (the ASR runs their finals at the
interims' low CPU priority: live users of the same replicas go first). A
probe that cannot run (no address, a call failing) is an
inconclusive check, never a pass: the step holds."""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Sequence

import grpc

from release.judge import FAIL, INCONCLUSIVE, PASS, Check
from release.tts_probe import roundtrip, roundtrip_check


@dataclasses.dataclass(frozen=True)
class QualityConfig:
    max_wer: float = 0.25          # absolute ceiling for the canary (either probe)
    # Canary WER may exceed stable's by this much (absolute). quality:asr_wer:
    # canary > stable + margin fails. quality:tts_roundtrip_wer: the paired
    # interval decides against it (release/tts_probe.py); 0.05 is ~5 words of
    # the 12 sentences' 109, and Piper's sampling noise alone moved the pooled
    # WER of the same voice by up to 4 words (docs/releases.md).
    wer_margin: float = 0.05
    # Syntheses of each sentence per side in the TTS round trip: a second take
    # averages Piper's noise, so an unchanged voice passes more often.
    tts_takes: int = 2
    # quality:asr_slices: eval/asr/slices.py's comparison of the canary
    # against stable on the evaluation set; a slice regresses when its paired
    # 95 % interval is above 0 and the WER difference exceeds this margin.
    slice_margin: float = 0.02
    slices: bool = True
    # quality:llm_answers (release/llm_probe.py): questions of the answer eval
    # asked of both LLMs; the canary fails stating more than this many key
    # facts fewer than stable, or with unsupported claims in more than this
    # many answers more.
    llm_questions: int = 12
    llm_fact_margin: int = 1
    llm_claim_margin: int = 1
    # The passages the LLM probe asks with: retrieved as the gateway does
    # (release run: $GATEWAY_RAG_K and $GATEWAY_RAG_MIN_SCORE, the gateway's own).
    rag_k: int = 3
    rag_min_score: float = 0.3


@dataclasses.dataclass
class Score:
    wer: float | None              # None: the probe could not run
    why: str = ""


def quality_check(rule: str, canary: Score, stable: Score, cfg: QualityConfig) -> Check:
    if canary.wer is None or stable.wer is None:
        return Check(rule, INCONCLUSIVE, detail={"why": canary.why or stable.why or "probe did not run"})
    detail = {"wer_canary": canary.wer, "wer_stable": stable.wer, "margin": cfg.wer_margin}
    if canary.wer > cfg.max_wer:
        return Check(rule, FAIL, canary.wer, cfg.max_wer, detail)
    limit = stable.wer + cfg.wer_margin
    return Check(rule, FAIL if canary.wer > limit else PASS, canary.wer, limit, detail)


SLICES_RULE = "quality:asr_slices"
PROBE_BATCH = 20


def slice_check(stable: Sequence, canary: Sequence, cfg: QualityConfig) -> Check:
    """eval/asr's slice comparison (stable = A, canary = B) as a judge check:
    FAIL on any regressing slice (the worst one is the check's value)."""
    from eval.asr.slices import compare

    cmp = compare(stable, canary, margin=cfg.slice_margin)
    overall = next((d for d in cmp.deltas if d.dimension == "all"), None)
    if overall is None:
        return Check(SLICES_RULE, INCONCLUSIVE, detail={"why": "no utterance transcribed by both"})
    detail = {"wer_stable": round(overall.wer_a, 4), "wer_canary": round(overall.wer_b, 4),
              "utterances": overall.utterances, "margin": cfg.slice_margin, "recommendation": cmp.recommendation()}
    bad = cmp.regressions()
    if not bad:
        return Check(SLICES_RULE, PASS, round(overall.diff, 4), cfg.slice_margin, detail)
    worst = bad[0]
    detail["regressions"] = [{"slice": f"{d.dimension} {d.bucket}", "utterances": d.utterances,
                              "wer_stable": round(d.wer_a, 4), "wer_canary": round(d.wer_b, 4),
                              "interval": [round(d.low, 4), round(d.high, 4)]} for d in bad]
    return Check(SLICES_RULE, FAIL, round(worst.diff, 4), cfg.slice_margin, detail)


class Prober:
    """Runs the probes of one service's release over gRPC (addresses of one
    stable and one canary replica)."""

    def __init__(self, asr_stable: str = "", asr_canary: str = "", tts_stable: str = "", tts_canary: str = "",
                 cfg: QualityConfig = QualityConfig(), sentences: Sequence[str] | None = None,
                 llm_stable: str = "", llm_canary: str = "", rag: str = "") -> None:
        self.asr_stable, self.asr_canary = asr_stable, asr_canary
        self.tts_stable, self.tts_canary = tts_stable, tts_canary
        self.llm_stable, self.llm_canary, self.rag = llm_stable, llm_canary, rag
        self.cfg, self._sentences = cfg, list(sentences) if sentences is not None else None

    @property
    def sentences(self) -> list[str]:
        """What the TTS round trip speaks: by default `make eval`'s 12 everyday
        sentences (eval/tts.py: 109 words with the numbers, names, times and
        places a voice gets wrong), so one word in error moves the WER by ~0.9
        points, not 2.3 as with the 4 sentences (44 words) it spoke before.
        Imported when first needed, as the probes' other evaluation code is."""
        if self._sentences is None:
            from eval.tts import SENTENCES

            self._sentences = list(SENTENCES)
        return self._sentences

    async def __call__(self, service: str) -> list[Check]:
        if service == "asr":
            from clients.clips import load_clips

            try:
                pairs = [(c.pcm, c.text) for c in load_clips(rate=16000)]
            except FileNotFoundError as exc:   # e.g. an image without tests/data
                return [quality_check("quality:asr_wer", Score(None, str(exc)), Score(None), self.cfg)]
            checks = [quality_check("quality:asr_wer", await self._asr(self.asr_canary, pairs),
                                    await self._asr(self.asr_stable, pairs), self.cfg)]
            if self.cfg.slices:
                checks.append(await self._asr_slices())
            return checks
        if service == "tts":
            canary = await roundtrip(self.tts_canary, self.asr_stable, self.sentences, self.cfg.tts_takes)
            stable = await roundtrip(self.tts_stable, self.asr_stable, self.sentences, self.cfg.tts_takes)
            return [roundtrip_check(self.sentences, canary, stable, self.cfg)]
        if service == "llm":
            from release.llm_probe import probe

            return [await probe(self.llm_stable, self.llm_canary, self.rag, self.cfg.llm_questions,
                                self.cfg.llm_fact_margin, self.cfg.llm_claim_margin,
                                k=self.cfg.rag_k, min_score=self.cfg.rag_min_score)]
        return []

    async def _asr_slices(self) -> Check:
        from eval.asr.speech import bundled

        try:
            speech = bundled(phrases=True)
        except FileNotFoundError as exc:
            return Check(SLICES_RULE, INCONCLUSIVE, detail={"why": str(exc)})
        # Both at once: each side is one stream at a time, so one core each
        # (94 -> 65 s on 2 cores). A task group: a side that fails stops the other.
        async with asyncio.TaskGroup() as tg:
            stable_t = tg.create_task(self._transcripts(self.asr_stable, speech))
            canary_t = tg.create_task(self._transcripts(self.asr_canary, speech))
        stable, canary = stable_t.result(), canary_t.result()
        if isinstance(stable, str) or isinstance(canary, str):
            return Check(SLICES_RULE, INCONCLUSIVE, detail={"why": canary if isinstance(canary, str) else stable})
        return slice_check(stable, canary, self.cfg)

    async def _transcripts(self, address: str, speech) -> list | str:
        """eval Results of ``speech`` through the ASR at ``address``, or why not."""
        from common.audio import float_to_pcm16
        from eval.asr.slices import Result

        if not address:
            return "no ASR address to probe"
        out = []
        for i in range(0, len(speech), PROBE_BATCH):   # a stream per batch: no long backlog on one stream
            batch = speech[i:i + PROBE_BATCH]
            try:
                # Beam 1, as the gateway asks for live finals (and as `make eval` scores).
                hyps = await _hypotheses(address, [float_to_pcm16(u.audio) for u in batch], beam_size=1)
            except grpc.aio.AioRpcError as exc:
                return f"ASR {address}: {exc.code().name}"
            out += [Result(u.name, u.seconds, "clean", u.text, h) for u, h in zip(batch, hyps)]
        return out

    async def _asr(self, address: str, pairs: list[tuple[bytes, str]]) -> Score:
        from clients.wer import wer

        if not address:
            return Score(None, "no ASR address to probe")
        try:
            hyps = await _hypotheses(address, [pcm for pcm, _ in pairs])
        except grpc.aio.AioRpcError as exc:
            return Score(None, f"ASR {address}: {exc.code().name}")
        return Score(wer([t for _, t in pairs], hyps))


async def _hypotheses(address: str, pcms: list[bytes], beam_size: int = 0) -> list[str]:
    """One transcript per utterance (PCM16 16 kHz) from the ASR at ``address``,
    at BACKGROUND priority and without word timings; a missing final is a
    transcript of nothing (all deletions). Raises grpc.aio.AioRpcError."""
    from common.stubs import asr_pb2, common_pb2
    from services.asr.client import SAMPLE_RATE, recognize

    config = asr_pb2.RecognitionConfig(language="en", interim_results=False, sample_rate_hz=SAMPLE_RATE,
                                       beam_size=beam_size, omit_words=True,
                                       priority=common_pb2.PRIORITY_BACKGROUND)
    record = await recognize(address, pcms, config=config, timeout=120.0)
    texts: dict[int, list[str]] = {}
    for f in record.finals:
        texts.setdefault(f.utterance_index, []).append(f.text)
    return [" ".join(texts.get(i, [])) for i in range(len(pcms))]
