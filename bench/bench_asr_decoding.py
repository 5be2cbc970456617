"""Which Whisper model, beam size and encoder window should the service use?
WER and the final pass's time for each, on the engine directly (no gRPC), 1
thread, over the project's speech: the 5 whole clips (3-7 s sentences) and
the 174 phrases of 2-4 words cut from them (clients/phrases.py), which are
what voice commands look like. Text normalised by clients/wer.py (numbers as
words: "8" = "eight").

Windows (services/asr/engine.py):
- ``trimmed``: the encoder sees the audio + 3 s (the service's default); a
  pass whose text loops is redone on the 30 s window (finals) or skipped
  (interims);
- ``30 s``: faster-whisper's transcribe on the whole window (``*_trim`` off);
- ``library``: plain ``WhisperModel.transcribe`` with its defaults (beam 5,
  temperature fallback), the reference the service must match.

"doubled" counts phrases whose text says a run of words twice back to back
that the reference does not ("for them for them"); "redone" the phrases
whose trimmed final was redone on the 30 s window (looping text, or a low
log-probability as faster-whisper judges it), which is where the p90 time
comes from.

    python -m bench asr_decoding   # base, trimmed vs library: ~10 min on 2 busy cores
    python -m bench.bench_asr_decoding --models tiny.en,base --windows "trimmed,30 s,library" [--pad 10]
                                   # every row of docs/benchmarks.md: ~40 min
"""
from __future__ import annotations

import argparse
import logging
import statistics
import threading
import time

import numpy as np

from clients.clips import clips
from clients.phrases import load_phrases
from clients.wer import repeated_run, wer
from common.audio import pcm16_to_float, read_wav
from services.asr import models
from services.asr.engine import EngineOptions, Unreliable, WhisperEngine

WINDOWS = {
    "trimmed": dict(),
    "30 s": dict(final_trim=False, interim_trim=False),
}


def _pass(engine: WhisperEngine, kind: str, audio: np.ndarray, beam: int) -> tuple[str, float]:
    never = threading.Event()
    if kind == "interim":
        t0 = time.perf_counter()
        try:
            return (tr := engine.transcribe_interim(audio, "en", never)).text, tr.model_seconds
        except Unreliable:   # looping text: the service shows nothing for this pass
            return "", time.perf_counter() - t0
    if kind == "library":
        t0 = time.perf_counter()
        segments, _ = engine.model.transcribe(audio, language="en", beam_size=beam)
        text = " ".join(s.text.strip() for s in segments)
        return text, time.perf_counter() - t0
    tr = engine.transcribe_final(audio, "en", beam, never, words=False)   # as the gateway asks
    return tr.text, tr.model_seconds


class _Redone(logging.Handler):
    """Counts the engine's "redoing it on the full 30 s window" log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "full 30 s window" in record.getMessage()


def score(engine: WhisperEngine, kind: str, beam: int,
          sets: dict[str, list[tuple[np.ndarray, str, str]]]) -> dict[str, object]:
    """``sets``: name -> [(audio, reference, item name)]."""
    row: dict[str, object] = {}
    redone = _Redone()
    log = logging.getLogger("services.asr.engine")
    log.addHandler(redone)
    log.setLevel(logging.INFO)
    for name, items in sets.items():
        hyps, secs = [], []
        redone.count = 0
        for audio, _ref, _ in items:
            text, sec = _pass(engine, kind, audio, beam)
            hyps.append(text)
            secs.append(sec)
        refs = [r for _, r, _ in items]
        row[name] = wer(refs, hyps)
        row[name + " s"] = statistics.median(secs)
        row[name + " p90 s"] = float(np.percentile(secs, 90))
        doubled = [(item, r, h) for (_, r, item), h in zip(items, hyps)
                   if repeated_run(h) and not repeated_run(r)]
        row[name + " doubled"] = len(doubled)
        row[name + " redone"] = redone.count
        row[name + " examples"] = doubled[:6]
    log.removeHandler(redone)
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="base", help="comma-separated, e.g. tiny.en,base (default base)")
    p.add_argument("--beams", default="1,5", help="final beam sizes (default 1,5)")
    p.add_argument("--windows", default="trimmed,library",
                   help="comma-separated subset of trimmed,30 s,library (default trimmed,library)")
    p.add_argument("--pad", type=float, default=3.0,
                   help="padding (s) the trimmed window's encoder sees after the audio (default 3)")
    a = p.parse_args(argv if argv is not None else [])
    sets = {
        "clips": [(pcm16_to_float(read_wav(w)[0]), ref, w.stem) for w, ref in clips()],
        "phrases": [(audio, ph.text, ph.name) for ph, audio in load_phrases()],
    }
    print(f"{len(sets['clips'])} clips ({sum(len(r.split()) for _, r, _ in sets['clips'])} words), "
          f"{len(sets['phrases'])} phrases ({sum(len(r.split()) for _, r, _ in sets['phrases'])} words), "
          "1 thread; time = model seconds per pass (median / p90)")
    print(f"{'model':<8}{'window':<10}{'pass':<8}{'beam':>4}{'WER clips':>10}{'WER phrases':>12}"
          f"{'doubled':>8}{'redone':>7}{'clip s':>14}{'phrase s':>14}")
    windows = a.windows.split(",")
    for model in a.models.split(","):
        path = str(models.resolve(model))
        for window in windows:
            opts = dict(WINDOWS.get(window, {}), final_pad_s=a.pad, interim_pad_s=a.pad)
            engine = WhisperEngine(path, EngineOptions(threads=1, num_workers=1, interim_nice=0, **opts))
            engine.warmup()
            runs = [("library", 5)] if window == "library" else \
                [("final", int(b)) for b in a.beams.split(",")] + [("interim", 1)]
            for kind, beam in runs:
                r = score(engine, kind, beam, sets)
                print(f"{model:<8}{window:<10}{kind:<8}{beam:>4}{r['clips']:>10.1%}{r['phrases']:>12.1%}"
                      f"{r['phrases doubled']:>8}{r['phrases redone']:>7}"
                      f"{r['clips s']:>8.3f}/{r['clips p90 s']:.2f}"
                      f"{r['phrases s']:>8.3f}/{r['phrases p90 s']:.2f}", flush=True)
                for item, ref, hyp in r["phrases examples"]:
                    print(f"{'':>12}{item} {ref!r} heard {hyp!r}")
            engine.close()


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
