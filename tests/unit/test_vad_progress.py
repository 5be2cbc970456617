"""Invariant: with VadConfig.progress_ms a VAD stream answers at least once per
progress_ms of processed audio (an event or, failing one, a progress response
with no event), so a client can tell a quiet room from a hung VAD; without it,
silence sends nothing, as before. A progress_ms no client could mean is refused."""
from __future__ import annotations

import pytest

from common.stubs import vad_pb2
from services.vad import convert
from services.vad.progress import Progress


def _event(ms: int) -> vad_pb2.DetectResponse:
    return vad_pb2.DetectResponse(speech_started=vad_pb2.SpeechStarted(audio_ms=ms), audio_processed_ms=ms)


def test_silence_is_acknowledged_once_per_interval():
    p = Progress(1000)
    sent = [p.with_progress([], ms) for ms in range(32, 3201, 32)]   # 3.2 s of 32 ms frames
    progress = [r[0].audio_processed_ms for r in sent if r]
    assert progress == [1024, 2048, 3072]
    assert all(r[0].WhichOneof("event") is None for r in sent if r)


def test_an_event_counts_as_the_acknowledgement():
    p = Progress(1000)
    assert p.with_progress([_event(900)], 900) and p.reported_ms == 900
    assert p.with_progress([], 1800) == []          # 900 ms since the event: not yet
    assert [r.audio_processed_ms for r in p.with_progress([], 1900)] == [1900]


def test_off_by_default():
    p = Progress(0)
    assert all(p.with_progress([], ms) == [] for ms in range(0, 60_000, 32))


@pytest.mark.parametrize("ms,ok", [(0, True), (100, True), (1000, True), (60_000, True),
                                   (50, False), (-1, False), (60_001, False)])
def test_progress_ms_is_validated(ms, ok):
    cfg = vad_pb2.VadConfig(progress_ms=ms)
    if ok:
        assert convert.progress_ms_from_config(cfg) == ms
    else:
        with pytest.raises(ValueError, match="progress_ms must be 0"):
            convert.progress_ms_from_config(cfg)
