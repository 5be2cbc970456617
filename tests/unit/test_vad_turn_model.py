"""The end-of-turn model sees what it was trained on: Whisper log-mel features
equal to transformers' WhisperFeatureExtractor(chunk_length=8) (a stored
reference), the turn's audio from 500 ms before its first speech, across
short pauses, cut to its last 8 s and zero-padded at the start; a VAD stream
that asks for it scores each pause on a worker thread and hands the score to
the stop that confirms that pause, never to a later one; a score that is
late or failed leaves the stop without one."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from common.audio import read_wav, silence
from services.vad.engine import VadEngine
from services.vad.segmenter import SegmenterParams, SpeechPaused, SpeechStart, SpeechStop
from services.vad.turn_model import (
    PRE_SPEECH_MS, WINDOW_SAMPLES, SmartTurnModel, TurnAudio, model_input,
)
from services.vad.whisper_mel import log_mel, mel_filters

DATA = Path(__file__).resolve().parent.parent / "data"


def _clip(name: str) -> np.ndarray:
    pcm, rate = read_wav(DATA / "speech" / f"librivox-sense-{name}.wav")
    assert rate == 16000
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0


def test_features_match_the_transformers_reference():
    ref = json.loads((DATA / "whisper_mel_reference.json").read_text())
    feats = model_input(_clip("0880"))
    assert feats.shape == (1, 80, 800) and feats.dtype == np.float32
    for col, values in zip(ref["columns"], ref["values"]):
        np.testing.assert_allclose(feats[0, :, col], values, atol=2e-5, err_msg=f"frame {col}")


def test_features_ignore_the_level_and_mel_filters_rise_in_frequency():
    audio = _clip("0930")
    np.testing.assert_allclose(log_mel(audio * 0.25, WINDOW_SAMPLES), log_mel(audio, WINDOW_SAMPLES), atol=1e-4)
    peaks = mel_filters().argmax(axis=0)
    assert (np.diff(peaks) >= 0).all() and peaks[-1] > peaks[0]


def test_short_audio_is_padded_at_the_start_and_long_audio_keeps_its_end():
    audio = _clip("0890")
    assert model_input(audio[-16000:]).shape == (1, 80, 800)
    long = np.concatenate([np.random.default_rng(0).normal(0, 0.1, 5 * 16000).astype(np.float32), audio])
    np.testing.assert_array_equal(model_input(long), model_input(long[-WINDOW_SAMPLES:]))
    # Start padding: the speech sits in the last frames, not the first.
    feats = model_input(audio[:32000])[0]
    assert feats[:, :400].std(axis=1).max() < 1e-4 < 0.1 < feats[:, -150:].std(axis=1).mean()


def test_turn_audio_ring_gives_exact_slices_whatever_the_chunking():
    rng = np.random.default_rng(1)
    audio = rng.normal(0, 0.1, 16 * 16000).astype(np.float32)
    ta = TurnAudio(keep_samples=9 * 16000)
    pos = 0
    for n in (1, 511, 7000, 16000 * 4, 3, 16000 * 10, 24485):
        ta.append(audio[pos:pos + n])
        pos += n
        if pos > 2 * 16000:
            upto_ms = pos / 16
            want = audio[max(0, pos - WINDOW_SAMPLES):pos]
            np.testing.assert_array_equal(ta.window(upto_ms), want)
    assert ta.total == audio.size


def test_turn_window_starts_before_the_first_speech_and_spans_short_pauses():
    ta = TurnAudio()
    ta.append(np.arange(6 * 16000, dtype=np.float32))
    ta.speech_started(1000)
    ta.speech_stopped(2000)
    ta.speech_started(3500)        # 1.5 s later: the same turn
    w = ta.window(4000)
    assert w[0] == (1000 - PRE_SPEECH_MS) * 16 and w[-1] == 4000 * 16 - 1
    ta.speech_stopped(4000)
    ta.speech_started(7500)        # 3.5 s later: a new turn
    ta.append(np.zeros(3 * 16000, dtype=np.float32))
    assert ta.window(8000).size == (8000 - (7500 - PRE_SPEECH_MS)) * 16


@pytest.fixture(scope="module")
def turn_model() -> SmartTurnModel:
    return SmartTurnModel(threads=1)


def test_a_finished_sentence_scores_complete_and_its_first_half_incomplete(turn_model):
    # Measured (docs/benchmarks.md): these read sentences end complete; cut in
    # the middle of a word they are not. A wrong padding side or feature
    # scale would break this.
    for name in ("0890", "0920"):
        audio = np.concatenate([_clip(name), np.zeros(3200, np.float32)])
        assert turn_model.predict(audio) > 0.5, name
        assert turn_model.predict(audio[:audio.size // 2]) < 0.5, name


class RecordingModel:
    """A stand-in for the ONNX model: records each window, scores its length."""

    def __init__(self) -> None:
        self.windows: list[np.ndarray] = []

    def predict(self, audio: np.ndarray) -> float:
        self.windows.append(audio)
        return audio.size / 1e6


def _speech_with_pause(pause_ms: int) -> bytes:
    pcm, _ = read_wav(DATA / "speech" / "librivox-sense-0880.wav")
    half = len(pcm) // 4 * 2
    return silence(800, 16000) + pcm[:half] + silence(pause_ms, 16000) + pcm[half:] + silence(800, 16000)


def _run(params: SegmenterParams, audio: bytes, model=None):
    engine = VadEngine(threads=1, turn_model=model)
    s = engine.open(params)
    events = []
    for i in range(0, len(audio), 640):
        events += s.push(audio[i:i + 640]).events
    return events + s.finish().events


def test_each_stop_carries_the_score_of_its_own_pause():
    model = RecordingModel()
    events = _run(SegmenterParams(min_silence_ms=300, end_of_turn=True, pause_events=True),
                  _speech_with_pause(600), model)
    stops = [e for e in events if isinstance(e, SpeechStop)]
    pauses = [e for e in events if isinstance(e, SpeechPaused)]
    assert len(stops) == 2 and len(pauses) >= 2
    assert len(model.windows) == len(pauses)
    for stop in stops:
        pause = [p for p in pauses if p.audio_ms == stop.audio_ms][-1]
        size = stop.turn.result(timeout=5) * 1e6
        # The window runs from 500 ms before the turn's first onset to the pause.
        onset = [e for e in events if isinstance(e, SpeechStart)][0].audio_ms
        assert size == pytest.approx((pause.decided_at_ms - (onset - PRE_SPEECH_MS)) * 16, abs=1)


def test_pauses_stay_internal_unless_asked_and_no_score_without_end_of_turn():
    model = RecordingModel()
    events = _run(SegmenterParams(end_of_turn=True), _speech_with_pause(600), model)
    assert not any(isinstance(e, SpeechPaused) for e in events)
    assert all(e.turn is not None for e in events if isinstance(e, SpeechStop))
    plain = _run(SegmenterParams(pause_events=True), _speech_with_pause(600), model)
    assert all(e.turn is None for e in plain if isinstance(e, SpeechStop))
    no_model = _run(SegmenterParams(end_of_turn=True), _speech_with_pause(600), None)
    assert all(e.turn is None for e in no_model if isinstance(e, SpeechStop))


async def test_a_late_or_failed_score_leaves_the_stop_without_a_probability(monkeypatch):
    from concurrent.futures import Future

    from services.vad import servicer

    monkeypatch.setattr(servicer, "TURN_WAIT_S", 0.01)
    ready, late, failed = Future(), Future(), Future()
    ready.set_result(0.25)
    failed.set_exception(RuntimeError("onnx failed"))
    assert await servicer._turn_score(ready) == 0.25
    assert await servicer._turn_score(late) is None
    assert await servicer._turn_score(failed) is None
