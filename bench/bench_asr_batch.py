"""Interim passes of several streams: one pass each vs one batched pass
(services/asr/batching.py), in process through WhisperEngine as the service
builds it (1 thread per pass, int8, the trimmed encoder), so the figures are
the model, not gRPC or scheduling:

- ``same``: 4 streams whose utterances so far are all 2 s (then all 4 s), the
  case where batching pays most (one encoder window for all);
- ``mixed``: 1.5, 2.5, 4 and 6 s, which the engine splits into groups whose
  encoder windows differ by at most ``BATCH_SPAN_S``;
- for each: wall time and CPU time (this process) of the four passes one
  after the other against one ``transcribe_interims`` call, and whether each
  stream's text is the same both ways.

    python -m bench asr_batch        # or: python -m bench.bench_asr_batch [--model base] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from common.audio import read_wav
from services.asr import models
from services.asr.batching import InterimItem
from services.asr.engine import EngineOptions, WhisperEngine

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
CASES = {"same 2 s": (2.0, 2.0, 2.0, 2.0), "same 4 s": (4.0, 4.0, 4.0, 4.0),
         "mixed 1.5-6 s": (1.5, 2.5, 4.0, 6.0)}


def clips() -> list[np.ndarray]:
    out = []
    for wav in sorted(SPEECH.glob("*.wav"))[:4]:
        pcm, rate = read_wav(wav)
        assert rate == 16000, f"{wav}: {rate} Hz"
        out.append(np.frombuffer(pcm, np.int16).astype(np.float32) / 32768)
    return out


def timed(fn) -> tuple[float, float, list]:
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - w0, time.process_time() - c0, result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="base")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv or [])
    # No niced copy (interim_nice 0): both ways on the same model and priority.
    engine = WhisperEngine(str(models.resolve(args.model)), EngineOptions(
        threads=1, num_workers=1, interim_workers=1, interim_nice=0))
    engine.warmup()
    never = threading.Event()
    audio = clips()
    print(f"Whisper {args.model} int8, 1 thread; 4 streams' interims, {args.rounds} rounds "
          "(median); wall / CPU seconds")
    print("| case | one pass each | batched | CPU saved | same texts |")
    print("|---|---|---|---|---|")
    for name, lengths in CASES.items():
        items = [InterimItem(a[:int(s * 16000)], "en", never) for a, s in zip(audio, lengths)]
        alone, batched, same = [], [], True
        for _ in range(args.rounds):
            w, c, singles = timed(lambda: [engine.transcribe_interim(i.audio, "en", never) for i in items])
            alone.append((w, c))
            w, c, together = timed(lambda: engine.transcribe_interims(items))
            batched.append((w, c))
            same = same and [s.text for s in singles] == [getattr(t, "text", t) for t in together]
        aw, ac = statistics.median(w for w, _ in alone), statistics.median(c for _, c in alone)
        bw, bc = statistics.median(w for w, _ in batched), statistics.median(c for _, c in batched)
        print(f"| {name} | {aw:.3f} / {ac:.3f} | {bw:.3f} / {bc:.3f} | {100 * (1 - bc / ac):.0f} % "
              f"| {'yes' if same else 'no'} |", flush=True)


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
