"""The VAD engine gives the same decisions whatever the chunking of the audio
(frames are buffered across chunks, with silero's 64-sample context and
state carried per stream), keeps streams independent, finds speech in real
speech and none in silence, and rejects odd byte counts."""
from __future__ import annotations

import pytest

from common.audio import AudioFormatError, read_wav, silence
from services.vad.engine import FRAME_MS, VadEngine
from services.vad.segmenter import SegmenterParams, SpeechStart, SpeechStop
from tests.procs import clips


@pytest.fixture(scope="module")
def engine() -> VadEngine:
    return VadEngine(threads=1)


@pytest.fixture(scope="module")
def padded() -> bytes:
    pcm, rate = read_wav(clips()[1][0])
    assert rate == 16000
    return silence(1000, rate) + pcm + silence(1000, rate)


def feed(engine: VadEngine, audio: bytes, chunk_bytes: int):
    s = engine.open(SegmenterParams())
    events = []
    for i in range(0, len(audio), chunk_bytes):
        events += s.push(audio[i:i + chunk_bytes]).events
    events += s.finish().events
    return s, events


def test_real_speech_gives_one_segment_inside_the_padded_clip(engine, padded):
    s, events = feed(engine, padded, len(padded))
    assert [type(e) for e in events] == [SpeechStart, SpeechStop]
    start, stop = events
    speech_end_ms = len(padded) / 32 - 1000
    assert 1000 <= start.audio_ms < stop.audio_ms <= speech_end_ms + 2 * FRAME_MS
    assert start.decided_at_ms >= start.audio_ms and stop.decided_at_ms >= stop.audio_ms


def test_chunking_does_not_change_results(engine, padded):
    s1, whole = feed(engine, padded, len(padded))
    for chunk in (2, 1000, 1024, 3334):
        s2, ev = feed(engine, padded, chunk)
        assert ev == whole, f"chunk of {chunk} bytes"
        assert s2.probs == pytest.approx(s1.probs, abs=1e-5)


def test_streams_do_not_share_state(engine, padded):
    a, b = engine.open(SegmenterParams()), engine.open(SegmenterParams())
    half = len(padded) // 2 // 1024 * 1024
    a.push(padded[:half])
    b.push(silence(500, 16000))  # interleave another stream's audio
    a.push(padded[half:])
    ref, _ = feed(engine, padded, len(padded))
    assert a.probs == pytest.approx(ref.probs, abs=1e-5)


def test_silence_is_not_speech(engine):
    s, events = feed(engine, silence(3000, 16000), 4000)
    assert events == []
    assert max(s.probs) < 0.5


def test_partial_frames_wait_for_more_audio(engine):
    s = engine.open(SegmenterParams())
    assert s.push(silence(20, 16000)).audio_processed_ms == 0   # 320 samples < 512
    assert s.push(silence(20, 16000)).audio_processed_ms == 32  # 640 -> one frame


def test_odd_byte_count_is_rejected(engine):
    with pytest.raises(AudioFormatError, match="odd"):
        engine.open(SegmenterParams()).push(b"\x00\x00\x00")


def test_speech_ends_near_where_its_energy_ends():
    """Silero's probability lets go of speech 110-320 ms after the sound (its
    hangover); with the energy gate (the default) the stop is nearer the
    energy's end. The clip is said twice, as in a session, so the floor is
    known from the room noise of the first."""
    from clients.speech import voiced_span
    from services.vad.engine import VadEngine as Engine
    pcm, rate = read_wav(clips()[1][0])
    gap = silence(1000, rate)
    audio = pcm + gap + pcm + gap
    second = (len(pcm) + len(gap)) / 32            # ms where the second saying starts
    energy_end = second + voiced_span(pcm, rate).end_ms

    def stop_of_second(eng) -> int:
        s = eng.open(SegmenterParams())
        events = s.push(audio).events + s.finish().events
        return [e for e in events if isinstance(e, SpeechStop)][-1].audio_ms

    with_energy = stop_of_second(Engine(threads=1))
    silero_alone = stop_of_second(Engine(threads=1, energy=None))
    assert silero_alone - energy_end > 120          # what the gate is for (180 ms on this clip)
    assert -FRAME_MS <= with_energy - energy_end <= 100
