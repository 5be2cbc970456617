"""The TTS round-trip probe (``quality:tts_roundtrip_wer``), paired per
sentence: the same sentences (eval/tts.py's 12 by default) synthesized by the
stable and by the canary TTS, each transcribed back by the *stable* ASR, and
the two compared sentence by sentence with eval/asr's paired bootstrap
(``eval.asr.slices.compare``, stable as A, canary as B), not as two pooled
WERs against a fixed margin.

Piper samples noise, so the same voice twice misreads a different word or
two; pairing removes what the sentences themselves cost (both sides speak
them) and the bootstrap over sentences measures what is left. Each sentence
is spoken ``QualityConfig.tts_takes`` times per side (a take is a fresh
synthesis); a sentence's takes are scored as one unit (reference repeated,
transcripts joined), so the bootstrap resamples sentences, not takes.

Verdict (``roundtrip_check``, pure):
- FAIL when the canary is worse beyond chance (the 95 % interval of the WER
  difference entirely above 0) *and* by more than ``wer_margin``; or when
  its WER is over the ``max_wer`` ceiling;
- PASS when the canary's WER is within ``wer_margin`` of stable's, as with
  the pooled rule before;
- INCONCLUSIVE when it is worse by more than the margin but the interval
  reaches 0 (it may be chance: the step holds and the next check speaks
  again), with fewer than ``MIN_UTTERANCES`` usable sentences, or when a
  side could not run (no address, an RPC failing).

Asking more for a PASS (the interval's upper bound under the margin) held a
canary identical to stable: measured on the real services (integration
test, 12 sentences x 2 takes), 5.0 % against 6.9 %, interval [-0.009, +0.062],
one take of one sentence misread by 4 words. Twelve sentences are too few
for that bound; what pairing buys is that such noise never FAILs."""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Sequence

import grpc

from release.judge import FAIL, INCONCLUSIVE, PASS, Check

if TYPE_CHECKING:
    from release.probes import QualityConfig

ROUNDTRIP_RULE = "quality:tts_roundtrip_wer"
SEED = 0                # the bootstrap's: the same transcripts give the same verdict
WORST = 3               # sentences the canary did worst on, named in the detail


@dataclasses.dataclass
class Roundtrip:
    """One side's round trip: per sentence, the stable ASR's transcript of
    each take; None (with why) when the side could not run."""
    hypotheses: list[list[str]] | None
    why: str = ""


def _usable(takes: object) -> list[str] | None:
    """A sentence's takes as strings; None when any is missing or not text
    (a NaN from a broken caller): such a sentence is left out, not scored."""
    if not isinstance(takes, (list, tuple)) or not takes:
        return None
    if not all(isinstance(t, str) for t in takes):
        return None
    return list(takes)


def roundtrip_check(sentences: Sequence[str], canary: Roundtrip, stable: Roundtrip, cfg: QualityConfig) -> Check:
    from clients.wer import normalise
    from eval.asr.slices import MIN_UTTERANCES, Result, compare, counts

    if canary.hypotheses is None or stable.hypotheses is None:
        return Check(ROUNDTRIP_RULE, INCONCLUSIVE, detail={"why": canary.why or stable.why or "probe did not run"})
    a, b, takes = [], [], 0
    for i, text in enumerate(sentences):
        if not isinstance(text, str) or not normalise(text):
            continue
        sa = _usable(stable.hypotheses[i]) if i < len(stable.hypotheses) else None
        sb = _usable(canary.hypotheses[i]) if i < len(canary.hypotheses) else None
        if sa is None or sb is None or len(sa) != len(sb):
            continue
        takes = max(takes, len(sa))
        ref = " ".join([text] * len(sa))
        a.append(Result(f"s{i}", 0.0, "clean", ref, " ".join(sa)))
        b.append(Result(f"s{i}", 0.0, "clean", ref, " ".join(sb)))
    if len(a) < MIN_UTTERANCES:
        return Check(ROUNDTRIP_RULE, INCONCLUSIVE, detail={
            "sentences": len(a), "why": f"{len(a)} sentences transcribed on both sides, {MIN_UTTERANCES} needed"})
    d = next(x for x in compare(a, b, margin=cfg.wer_margin, seed=SEED).deltas if x.dimension == "all")
    if not all(math.isfinite(v) for v in (d.wer_a, d.wer_b, d.low, d.high)):
        return Check(ROUNDTRIP_RULE, INCONCLUSIVE, detail={"why": "WER not a number"})
    per = [(counts(ra), counts(rb), ra.utterance) for ra, rb in zip(a, b)]
    deltas = [cb.word_errors - ca.word_errors for ca, cb, _ in per]
    worst = sorted((x for x in per if x[1].word_errors > x[0].word_errors),
                   key=lambda x: x[0].word_errors - x[1].word_errors)[:WORST]
    detail = {
        "wer_stable": round(d.wer_a, 4), "wer_canary": round(d.wer_b, 4), "diff": round(d.diff, 4),
        "interval": [round(d.low, 4), round(d.high, 4)], "margin": cfg.wer_margin,
        "sentences": len(a), "takes": takes,
        "words": sum(ca.words for ca, _, _ in per),
        "word_errors_stable": sum(ca.word_errors for ca, _, _ in per),
        "word_errors_canary": sum(cb.word_errors for _, cb, _ in per),
        "sentences_worse": sum(1 for x in deltas if x > 0), "sentences_better": sum(1 for x in deltas if x < 0),
        "sentences_same": sum(1 for x in deltas if x == 0),
        "worst": [{"sentence": sentences[int(u[1:])], "errors_stable": ca.word_errors,
                   "errors_canary": cb.word_errors} for ca, cb, u in worst],
    }
    if d.wer_b > cfg.max_wer:
        return Check(ROUNDTRIP_RULE, FAIL, d.wer_b, cfg.max_wer, detail)
    if d.low > 0 and d.diff > cfg.wer_margin:
        return Check(ROUNDTRIP_RULE, FAIL, round(d.diff, 4), cfg.wer_margin, detail)
    if d.diff <= cfg.wer_margin:
        return Check(ROUNDTRIP_RULE, PASS, round(d.diff, 4), cfg.wer_margin, detail)
    detail["why"] = (f"canary WER {d.wer_b:.1%} against stable's {d.wer_a:.1%}, more than the margin "
                     f"{cfg.wer_margin:g} worse, but the paired 95 % interval [{d.low:+.3f}, {d.high:+.3f}] "
                     f"reaches 0: it may be chance")
    return Check(ROUNDTRIP_RULE, INCONCLUSIVE, round(d.diff, 4), cfg.wer_margin, detail)


async def roundtrip(tts_address: str, asr_address: str, sentences: Sequence[str], takes: int) -> Roundtrip:
    """Each sentence synthesized ``takes`` times by the TTS at ``tts_address``
    (16 kHz) and transcribed by the ASR at ``asr_address`` (BACKGROUND)."""
    from common.stubs import tts_pb2, tts_pb2_grpc
    from release.probes import PROBE_BATCH, _hypotheses

    if not tts_address or not asr_address:
        return Roundtrip(None, "no TTS or stable ASR address to probe")
    takes = max(1, takes)
    audio = []
    try:
        async with grpc.aio.insecure_channel(tts_address) as ch:
            stub = tts_pb2_grpc.SynthesizerStub(ch)
            for text in sentences:
                for _ in range(takes):
                    chunks = [c async for c in stub.Synthesize(
                        tts_pb2.SynthesizeRequest(text=text, sample_rate_hz=16000), timeout=60)]
                    audio.append(b"".join(c.audio for c in chunks))
    except grpc.aio.AioRpcError as exc:
        return Roundtrip(None, f"TTS {tts_address}: {exc.code().name}")
    hyps: list[str] = []
    try:
        for i in range(0, len(audio), PROBE_BATCH):   # a stream per batch, as the ASR probes do
            hyps += await _hypotheses(asr_address, audio[i:i + PROBE_BATCH])
    except grpc.aio.AioRpcError as exc:
        return Roundtrip(None, f"ASR {asr_address}: {exc.code().name}")
    return Roundtrip([hyps[i:i + takes] for i in range(0, len(hyps), takes)])
