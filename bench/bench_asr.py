"""ASR benchmark against the real service over gRPC, with the project's real
LibriVox clips (tests/data/speech):

- real-time factor of final passes (model time / audio time) and WER, beam 1 vs 5;
- time from force_eou to the final result for a 3 s and a 7 s utterance cut
  from the longest clip, streamed at real-time pace with interims on (as a
  voice turn is), beam 1 vs 5;
- interim cadence: audio between consecutive interims, wall time between them,
  words revised per interim;
- throughput with 1 vs 4 concurrent streams (every clip, sent as fast as
  possible, interims off), and force_eou→final with 4 real-time streams;
- peak RSS of the service process (VmHWM).

    python -m bench asr                     # or: python -m bench.bench_asr [--model tiny.en] [--runs 5]
"""
from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time

import jiwer

from bench.stats import peak_rss_mb
from common.audio import read_wav
from common.stubs import asr_pb2
from services.asr.client import SAMPLE_RATE, StreamRecord, recognize
from tests.procs import clips, running

BYTES_PER_S = 2 * SAMPLE_RATE


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


def _cfg(beam: int, interims: bool) -> asr_pb2.RecognitionConfig:
    return asr_pb2.RecognitionConfig(language="en", beam_size=beam, interim_results=interims,
                                     sample_rate_hz=SAMPLE_RATE)


def _ms(xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]
    return f"median {statistics.median(xs) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, n={len(xs)}"


async def _accuracy(address: str, speech: list[tuple[bytes, str]]) -> None:
    audio_s = sum(len(p) for p, _ in speech) / BYTES_PER_S
    for beam in (1, 5):
        model_s, refs, hyps = 0.0, [], []
        for pcm, ref in speech:
            rec = await recognize(address, [pcm], config=_cfg(beam, False), chunk_ms=40)
            model_s += rec.finals[0].processing_ms / 1000
            refs.append(_norm(ref))
            hyps.append(_norm(rec.finals[0].text))
        print(f"final pass, beam {beam}: RTF {model_s / audio_s:.3f} (model time / audio time over "
              f"{audio_s:.1f} s of speech in {len(speech)} clips), WER {jiwer.wer(refs, hyps) * 100:.1f} %")


async def _latency(address: str, long_pcm: bytes, runs: int) -> list[StreamRecord]:
    records = []
    for beam in (1, 5):
        for secs in (3, 7):
            cut = long_pcm[:secs * BYTES_PER_S]
            lat = []
            for _ in range(runs):
                rec = await recognize(address, [cut], config=_cfg(beam, True), chunk_ms=20, realtime=True)
                lat += rec.eou_to_final()
                records.append(rec)
            print(f"force_eou -> final, {secs} s utterance, beam {beam}: {_ms(lat)}")
    return records


def _cadence(records: list[StreamRecord]) -> None:
    gaps_ms, walls, churn = [], [], []
    for rec in records:
        interims = [r for r in rec.interims(0) if r.at < rec.eou_at[0]]
        covered = [r.response.audio_processed_ms for r in interims]
        gaps_ms += [b - a for a, b in zip([0] + covered, covered)]
        walls += [b.at - a.at for a, b in zip(interims, interims[1:])]
        churn += [r.response.changed_words for r in interims[1:]]
    if not gaps_ms:
        print("interim cadence: no interims")
        return
    print(f"interim cadence: audio between interims median {statistics.median(gaps_ms):.0f} ms, "
          f"max {max(gaps_ms)} ms; wall time between interims {_ms(walls)}; "
          f"words revised per interim mean {statistics.mean(churn):.2f}, max {max(churn)}")


async def _throughput(address: str, speech: list[tuple[bytes, str]], long_pcm: bytes) -> None:
    audio_s = sum(len(p) for p, _ in speech) / BYTES_PER_S
    for n in (1, 4):
        async def one_stream() -> None:
            for pcm, _ in speech:
                await recognize(address, [pcm], config=_cfg(0, False), chunk_ms=40)
        t0 = time.perf_counter()
        await asyncio.gather(*[one_stream() for _ in range(n)])
        wall = time.perf_counter() - t0
        print(f"{n} concurrent stream(s), fast send, beam 5, no interims: "
              f"{n * audio_s / wall:.2f} s of audio per second in total ({n * audio_s:.0f} s in {wall:.1f} s)")
    cut = long_pcm[:7 * BYTES_PER_S]
    for n in (1, 4):
        recs = await asyncio.gather(*[recognize(address, [cut], config=_cfg(1, True), chunk_ms=20,
                                                realtime=True) for _ in range(n)])
        lat = [x for r in recs for x in r.eou_to_final()]
        print(f"{n} concurrent real-time stream(s) with interims, 7 s utterance, beam 1: "
              f"force_eou -> final {_ms(lat)}")


async def _bench(address: str, runs: int) -> None:
    speech = []
    for wav, ref in clips():
        pcm, rate = read_wav(wav)
        assert rate == SAMPLE_RATE
        speech.append((pcm, ref))
    long_pcm = max(speech, key=lambda s: len(s[0]))[0]
    await recognize(address, [speech[0][0][:BYTES_PER_S]])   # warm the connection path
    await _accuracy(address, speech)
    records = await _latency(address, long_pcm, runs)
    _cadence(records)
    await _throughput(address, speech, long_pcm)


def main(model: str = "base", runs: int = 5) -> None:
    env = {"ASR_MODEL": model}
    t0 = time.perf_counter()
    with running("services.asr", "ASR_", env) as svc:
        print(f"model {model}: SERVING {time.perf_counter() - t0:.1f} s after start "
              f"(process start, model load, warm-up)")
        asyncio.run(_bench(svc.address, runs))
        print(f"peak RSS of the service (VmHWM): {peak_rss_mb(svc.proc.pid):.0f} MB")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="base", help="ASR_MODEL for the service (default base)")
    p.add_argument("--runs", type=int, default=5, help="repetitions per latency figure (default 5)")
    a = p.parse_args()
    main(a.model, a.runs)
