"""Smart Turn v3.2: the probability that a speaker's turn is complete, from
the sound of its last seconds (intonation, a trailing "and…", a filler).

One :class:`SmartTurnModel` per process (thread-safe, like every onnxruntime
session); each stream keeps its own :class:`TurnAudio`, the audio the model
will see. Preprocessing follows pipecat's LocalSmartTurnAnalyzerV3, which the
model ships with: the turn's audio from 500 ms before its first speech, the
last 8 s of it, zero-padded at the *start* to 8 s, as Whisper log-mel
features (services/vad/whisper_mel.py) of shape 1×80×800; the output is a
sigmoid probability."""
from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path

import numpy as np

from services.vad.whisper_mel import SAMPLE_RATE, log_mel

log = logging.getLogger(__name__)

WINDOW_SAMPLES = 8 * SAMPLE_RATE
# pipecat's pre_speech_ms: the model was trained on turns that begin a little
# before their first word.
PRE_SPEECH_MS = 500
# Speech starting this soon after a stop continues the same turn, so the model
# hears "eight of spades … four of clubs" as one turn, not only the last part.
# Longer than the gateway's longest end-of-turn window (GATEWAY_SEMANTIC_*).
CONTINUATION_MS = 3000


def default_model_path() -> Path:
    """smart-turn-v3.2-cpu.onnx inside the pipecat-ai package, found without
    importing pipecat (installed with --no-deps: its imports would fail)."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pipecat-ai is not installed (pip install --no-deps pipecat-ai==1.14.0)")
    root = Path(list(spec.submodule_search_locations)[0])
    return root / "audio" / "turn" / "smart_turn" / "data" / "smart-turn-v3.2-cpu.onnx"


def model_input(audio: np.ndarray) -> np.ndarray:
    """The 1×80×800 ``input_features`` for a turn's audio (16 kHz float32)."""
    audio = np.asarray(audio, dtype=np.float32)[-WINDOW_SAMPLES:]
    audio = np.pad(audio, (WINDOW_SAMPLES - audio.size, 0))
    return log_mel(audio, WINDOW_SAMPLES)[None, :, :]


class SmartTurnModel:
    """The shared ONNX model; ``predict`` blocks for ~0.1 s of CPU: call it
    from a worker thread."""

    def __init__(self, path: str | Path | None = None, threads: int = 1, device: str = "cpu") -> None:
        import onnxruntime as ort

        t0 = time.perf_counter()
        self.path = Path(path) if path else default_model_path()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" \
            else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        log.info("smart turn model loaded from %s in %.2f s", self.path, time.perf_counter() - t0)

    def predict(self, audio: np.ndarray) -> float:
        """Probability (0-1) that the turn whose audio ends ``audio`` is complete."""
        (out,) = self.session.run(None, {"input_features": model_input(audio)})
        return float(np.asarray(out).reshape(-1)[0])


class TurnAudio:
    """One stream's recent audio (a ring of the last 8 s plus one chunk) and
    where its current turn began, in ms from the stream's first sample."""

    def __init__(self, keep_samples: int = WINDOW_SAMPLES + 2 * SAMPLE_RATE) -> None:
        self._ring = np.zeros(keep_samples, dtype=np.float32)
        self.total = 0                 # samples appended since the stream began
        self.turn_start_ms = 0.0
        self._last_stop_ms: float | None = None

    def append(self, samples: np.ndarray) -> None:
        n, size = samples.size, self._ring.size
        if n >= size:
            self._ring[:] = samples[-size:]
            self._ring = np.roll(self._ring, self.total + n)   # keep index = total mod size
        else:
            pos = self.total % size
            first = min(n, size - pos)
            self._ring[pos:pos + first] = samples[:first]
            self._ring[:n - first] = samples[first:]
        self.total += n

    def speech_started(self, onset_ms: float) -> None:
        if self._last_stop_ms is None or onset_ms - self._last_stop_ms > CONTINUATION_MS:
            self.turn_start_ms = max(0.0, onset_ms - PRE_SPEECH_MS)

    def speech_stopped(self, end_ms: float) -> None:
        self._last_stop_ms = end_ms

    def window(self, upto_ms: float) -> np.ndarray:
        """The turn's audio up to ``upto_ms`` (at most its last 8 s; a copy)."""
        end = min(self.total, int(round(upto_ms * SAMPLE_RATE / 1000)))
        start = max(int(round(self.turn_start_ms * SAMPLE_RATE / 1000)), end - WINDOW_SAMPLES,
                    self.total - self._ring.size, 0)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        idx = np.arange(start, end) % self._ring.size
        return self._ring[idx]
