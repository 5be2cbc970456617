"""Silero VAD on onnxruntime: one InferenceSession per process, one
:class:`VadStream` (recurrent state, 64-sample context, frame buffer and
segmenter) per audio stream. No gRPC here; tests drive it directly.

With an end-of-turn model (services/vad/turn_model.py) and a stream that asks
for it, each pause (the first unvoiced frame after speech) submits the turn's
audio to the model on a worker thread; the stop that confirms that pause
carries the pending result (``SpeechStop.turn``), and a pause that speech
continues from is dropped unscored or its result ignored."""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
import time
from typing import Any
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common.audio import check_pcm16
from services.vad.energy import EnergyGate, EnergyParams, frame_db
from services.vad.segmenter import Event, Segmenter, SegmenterParams, SpeechPaused, SpeechStart, SpeechStop
from services.vad.turn_model import SmartTurnModel, TurnAudio

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512   # silero's window at 16 kHz: 32 ms
CONTEXT_SAMPLES = 64  # silero v5+ sees the previous frame's last 64 samples
FRAME_MS = FRAME_SAMPLES * 1000 / SAMPLE_RATE


def default_model_path() -> Path:
    """silero_vad.onnx inside the silero-vad package, found without importing
    the package (its __init__ imports torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("silero-vad is not installed (pip install --no-deps silero-vad)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"


class SileroModel:
    """The shared ONNX model; ``run`` is thread-safe (onnxruntime sessions are)."""

    def __init__(self, path: str | Path | None = None, threads: int = 1, device: str = "cpu") -> None:
        import onnxruntime as ort

        self.path = Path(path) if path else default_model_path()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        # Frames are tiny: a second pool of inter-op threads only adds wake-ups.
        opts.inter_op_num_threads = 1
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" \
            else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def new_state(self) -> np.ndarray:
        return np.zeros((2, 1, 128), dtype=np.float32)

    def run(self, window: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        """``window``: (1, 64 + 512) float32 context + frame; returns (prob, next state)."""
        prob, state = self.session.run(None, {"input": window, "state": state, "sr": self._sr})
        return float(prob[0, 0]), state


@dataclasses.dataclass
class PushResult:
    events: list[Event]
    frame_seconds: list[float]  # inference time of each frame classified
    audio_processed_ms: int     # audio classified so far (whole frames)


class VadStream:
    """One stream's session: buffers arbitrary chunks into 512-sample frames.

    Not thread-safe on its own: a stream's chunks are pushed one at a time
    (the servicer awaits each push before reading the next chunk)."""

    def __init__(self, model: SileroModel, params: SegmenterParams,
                 turns: "TurnScorer | None" = None, energy: EnergyParams | None = EnergyParams()) -> None:
        self.model = model
        # Where the sound ends, not where silero's state lets go of it (energy.py); None = off.
        self.energy = EnergyGate(energy) if energy is not None else None
        self.params = params
        # The end-of-turn model scores pauses, whether or not the client sees them.
        self.turns = turns if params.end_of_turn else None
        seg_params = dataclasses.replace(params, pause_events=True) if self.turns else params
        self.segmenter = Segmenter(seg_params, FRAME_MS)
        self.turn_audio = TurnAudio() if self.turns else None
        self._pending: tuple[int, Future] | None = None   # (speech end ms, score) of the latest pause
        self._state = model.new_state()
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._pending_samples = np.zeros(0, dtype=np.float32)
        self.probs: list[float] = []  # kept for tests and debugging; 4 bytes per 32 ms

    @property
    def audio_processed_ms(self) -> int:
        return round(self.segmenter.frames * FRAME_MS)

    def frames_in(self, nbytes: int) -> int:
        """Whole frames a push of ``nbytes`` of PCM16 would classify."""
        return (self._pending_samples.size + nbytes // 2) // FRAME_SAMPLES

    def push(self, pcm: bytes) -> PushResult:
        """Classify every whole frame now available (blocking: ~0.6 ms of CPU per frame)."""
        check_pcm16(pcm)
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        if self.turn_audio is not None:
            self.turn_audio.append(samples)
        buf = np.concatenate([self._pending_samples, samples]) if self._pending_samples.size else samples
        n = buf.size // FRAME_SAMPLES
        events: list[Event] = []
        times: list[float] = []
        for i in range(n):
            frame = buf[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]
            window = np.concatenate([self._context, frame])[None, :]
            t0 = time.perf_counter()
            prob, self._state = self.model.run(window, self._state)
            times.append(time.perf_counter() - t0)
            self._context = frame[-CONTEXT_SAMPLES:]
            self.probs.append(prob)
            quiet = False
            if self.energy is not None:
                sg = self.segmenter
                quiet = self.energy.quiet(frame_db(frame), prob, sg.params.threshold, sg.params.low_threshold,
                                          sg.in_speech)
            ev = self._turn_event(self.segmenter.push(prob, quiet))
            if ev is not None:
                events.append(ev)
        self._pending_samples = buf[n * FRAME_SAMPLES:].copy()
        return PushResult(events, times, self.audio_processed_ms)

    def finish(self) -> PushResult:
        """End of audio: a trailing part-frame is not classified (too short for
        silero); an open segment is closed at the end of the last voiced frame."""
        ev = self._turn_event(self.segmenter.finish())
        return PushResult([ev] if ev else [], [], self.audio_processed_ms)

    def _turn_event(self, ev: Event | None) -> Event | None:
        """Score pauses, hand the score to their stop; hide pauses the client
        did not ask for."""
        if self.turns is None or self.turn_audio is None or ev is None:
            return ev
        if isinstance(ev, SpeechStart):
            self.turn_audio.speech_started(ev.audio_ms)
        elif isinstance(ev, SpeechPaused):
            if self._pending is not None:
                self._pending[1].cancel()    # speech went on after that pause
            self._pending = (ev.audio_ms, self.turns.submit(self.turn_audio.window(ev.decided_at_ms)))
            return ev if self.params.pause_events else None
        elif isinstance(ev, SpeechStop):
            self.turn_audio.speech_stopped(ev.audio_ms)
            pending, self._pending = self._pending, None
            if pending is not None and pending[0] == ev.audio_ms:
                return dataclasses.replace(ev, turn=pending[1])
        return ev


class VadEngine:
    """What the service holds: the model, and a factory for per-stream sessions."""

    def __init__(self, model_path: str | Path | None = None, threads: int = 1, device: str = "cpu",
                 turn_model: "SmartTurnModel | None" = None,
                 energy: EnergyParams | None = EnergyParams()) -> None:
        t0 = time.perf_counter()
        self.energy = energy
        self.model = SileroModel(model_path, threads, device)
        log.info("silero VAD loaded from %s in %.2f s", self.model.path, time.perf_counter() - t0)
        self.turns = TurnScorer(turn_model) if turn_model is not None else None

    @property
    def model_name(self) -> str:
        return self.model.path.name

    def open(self, params: SegmenterParams) -> VadStream:
        return VadStream(self.model, params, self.turns, self.energy)


class TurnScorer:
    """The end-of-turn model behind one worker thread: pauses of all streams
    queue there, so scoring never runs on the event loop nor delays a stream's
    own frames (which still need their own ~0.1 ms each)."""

    def __init__(self, model: "SmartTurnModel | Any") -> None:
        self.model = model
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")

    def submit(self, audio: np.ndarray) -> Future:
        return self._pool.submit(self.model.predict, audio)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
