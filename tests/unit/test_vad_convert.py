"""VadConfig fields of 0 mean the documented defaults (0.5, 150, 200, 300 ms,
16 kHz); any other sample rate, or an out-of-range value, is a ValueError
that names the field."""
from __future__ import annotations

import pytest

from common.stubs import vad_pb2
from services.vad.convert import event_to_pb, params_from_config
from services.vad.segmenter import SegmenterParams, SpeechStart, SpeechStop


def test_zero_means_default():
    assert params_from_config(vad_pb2.VadConfig()) == SegmenterParams(0.5, 150, 200, 300)


def test_values_pass_through():
    p = params_from_config(vad_pb2.VadConfig(threshold=0.7, min_speech_ms=90, min_silence_ms=500,
                                             prefix_padding_ms=100, sample_rate_hz=16000))
    assert p.threshold == pytest.approx(0.7)
    assert (p.min_speech_ms, p.min_silence_ms, p.prefix_padding_ms) == (90, 500, 100)


@pytest.mark.parametrize("cfg, words", [
    (vad_pb2.VadConfig(sample_rate_hz=8000), "sample_rate_hz must be 16000"),
    (vad_pb2.VadConfig(sample_rate_hz=-16000), "sample_rate_hz must be 16000"),
    (vad_pb2.VadConfig(threshold=1.0), "threshold must be between 0 and 1"),
    (vad_pb2.VadConfig(min_silence_ms=-1), "min_silence_ms must not be negative"),
])
def test_bad_config(cfg, words):
    with pytest.raises(ValueError, match=words):
        params_from_config(cfg)


def test_events_carry_exact_times():
    start = event_to_pb(SpeechStart(1248, 948, 1408), 1440)
    assert (start.speech_started.audio_ms, start.speech_started.padded_start_ms,
            start.speech_started.decided_at_ms, start.audio_processed_ms) == (1248, 948, 1408, 1440)
    stop = event_to_pb(SpeechStop(7872, 8096), 8096)
    assert stop.WhichOneof("event") == "speech_stopped" and stop.speech_stopped.audio_ms == 7872


def test_end_of_turn_is_asked_for_and_its_probability_is_set_only_when_computed():
    assert params_from_config(vad_pb2.VadConfig(end_of_turn=True)).end_of_turn
    assert not params_from_config(vad_pb2.VadConfig()).end_of_turn
    scored = event_to_pb(SpeechStop(7872, 8096), 8096, 0.0)
    assert scored.speech_stopped.HasField("turn_complete_probability")
    assert scored.speech_stopped.turn_complete_probability == 0.0
    assert not event_to_pb(SpeechStop(7872, 8096), 8096).speech_stopped.HasField("turn_complete_probability")
