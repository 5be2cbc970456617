"""Transcribing the speech set with one ASR release, in process, the way the
service makes a final (services/asr/engine.py: trimmed window, the redo on
the full window when a pass looks unreliable), at the gateway's beam.

A release is ``model[:key=value,...]``: ``base``, ``tiny.en``,
``base:beam=5``, ``base:trim=0`` (trim = the trimmed encoder window, pad = its
padding in seconds, beam = the final pass's beam size)."""
from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from typing import Callable, Sequence

from eval.asr.slices import Result
from eval.asr.speech import Utterance, condition, with_noise


@dataclasses.dataclass(frozen=True)
class Release:
    spec: str
    model: str
    beam: int = 1
    trim: bool = True
    pad_s: float = 3.0

    @classmethod
    def parse(cls, spec: str) -> "Release":
        model, _, opts = spec.partition(":")
        kw: dict = {}
        for item in filter(None, opts.split(",")):
            key, _, value = item.partition("=")
            if key == "beam":
                kw["beam"] = int(value)
            elif key == "trim":
                kw["trim"] = value not in ("0", "false", "off")
            elif key == "pad":
                kw["pad_s"] = float(value)
            else:
                raise ValueError(f"release {spec!r}: unknown option {key!r} (beam, trim, pad)")
        if not model:
            raise ValueError(f"release {spec!r}: no model (base, tiny.en or a model directory)")
        return cls(spec, model, **kw)


@dataclasses.dataclass
class Run:
    release: Release
    results: list[Result]
    model_seconds: list[float]      # per pass: what a final costs (the service's asr_final time)

    def latency_ms(self) -> dict[str, float]:
        xs = sorted(self.model_seconds)
        if not xs:
            return {}
        return {"p50": 1000 * statistics.median(xs), "p95": 1000 * xs[min(len(xs) - 1, int(0.95 * len(xs)))]}


Transcribe = Callable[[Utterance, "object"], tuple[str, float]]


def engine_transcriber(release: Release, threads: int = 2):
    """(transcribe(audio) -> (text, model seconds), close)."""
    from services.asr import models
    from services.asr.engine import EngineOptions, WhisperEngine

    eng = WhisperEngine(str(models.resolve(release.model)), EngineOptions(
        threads=threads, num_workers=1, interim_nice=0, final_trim=release.trim, final_pad_s=release.pad_s))
    language = "en" if "en" in eng.languages else None
    never = threading.Event()

    def transcribe(audio) -> tuple[str, float]:
        t0 = time.perf_counter()
        tr = eng.transcribe_final(audio, language, release.beam, never, words=False)
        return tr.text, time.perf_counter() - t0

    return transcribe, eng.close


def run(release: Release, speech: Sequence[Utterance], snrs: Sequence[float | None],
        transcribe: Callable, progress: Callable[[str], None] = lambda _: None) -> Run:
    out = Run(release, [], [])
    for snr in snrs:
        for u in speech:
            text, secs = transcribe(with_noise(u, snr))
            out.results.append(Result(u.name, u.seconds, condition(snr), u.text, text))
            out.model_seconds.append(secs)
        progress(f"{release.spec}: {condition(snr)} done ({len(speech)} utterances)")
    return out
