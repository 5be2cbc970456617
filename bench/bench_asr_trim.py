"""Does trimming the encoder window cost accuracy? The ASR engine encodes only
the audio plus a few seconds of padding (``final_trim``/``interim_trim``)
instead of Whisper's 30 s window. This runs both paths over every project
clip, directly on the engine (no gRPC), and prints each path's WER (text
normalised: case, punctuation, hyphens) and model time per pass, for the
final pass at beam 1 (voice turns) and beam 5 (the service default), and for
the interim pass.

    python -m bench asr_trim     # or: python -m bench.bench_asr_trim [--model base]
"""
from __future__ import annotations

import argparse
import re
import statistics
import threading

import jiwer

from tests.procs import clips
from common.audio import pcm16_to_float, read_wav
from services.asr import models
from services.asr.engine import EngineOptions, WhisperEngine


def norm(text: str) -> str:
    """Lower case, no punctuation; a hyphen separates words ("ill-disposed");
    "Mr." is "mister", as Whisper's English normaliser has it."""
    words = re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " ")).split()
    return " ".join("mister" if w == "mr" else w for w in words)


def run_path(engine: WhisperEngine, audio: list, refs: list[str], kind: str,
             beam: int) -> tuple[float, float, list[str]]:
    """(WER over all clips, median model seconds per pass, hypotheses)."""
    never = threading.Event()
    hyps, secs = [], []
    for a in audio:
        if kind == "interim":
            tr = engine.transcribe_interim(a, "en", never)
        else:
            tr = engine.transcribe_final(a, "en", beam, never, words=False)
        hyps.append(norm(tr.text))
        secs.append(tr.model_seconds)
    return jiwer.wer([norm(r) for r in refs], hyps), statistics.median(secs), hyps


def compare(model: str = "base") -> dict[tuple[str, int, bool], float]:
    data = [(pcm16_to_float(read_wav(w)[0]), ref) for w, ref in clips()]
    audio, refs = [a for a, _ in data], [r for _, r in data]
    path = str(models.resolve(model))
    engines = {
        True: WhisperEngine(path, EngineOptions(threads=1, num_workers=1, interim_nice=0)),
        False: WhisperEngine(path, EngineOptions(threads=1, num_workers=1, interim_nice=0,
                                                 interim_trim=False, final_trim=False)),
    }
    for e in engines.values():
        e.warmup()
    out: dict[tuple[str, int, bool], float] = {}
    print(f"model {model}, {len(audio)} clips, {sum(len(r.split()) for r in refs)} words, 1 thread")
    print(f"{'pass':<10}{'beam':>5}{'window':>10}{'WER':>8}{'median s':>10}")
    for kind, beam in (("final", 1), ("final", 5), ("interim", 1)):
        for trimmed in (True, False):
            wer, sec, hyps = run_path(engines[trimmed], audio, refs, kind, beam)
            out[(kind, beam, trimmed)] = wer
            print(f"{kind:<10}{beam:>5}{'trimmed' if trimmed else '30 s':>10}{wer:>8.1%}{sec:>10.3f}")
            for h, r in zip(hyps, refs):
                if h != norm(r):
                    print(f"{'':>12}heard: {h!r}")
    for e in engines.values():
        e.close()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="base", help="base or tiny.en or a model directory (default base)")
    a = p.parse_args(argv)
    compare(a.model)


if __name__ == "__main__":
    main()
