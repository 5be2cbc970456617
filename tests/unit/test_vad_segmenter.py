"""The VAD segmenter turns per-frame probabilities into start/stop events at
exact audio times: onset = start of the first voiced frame, stop = end of the
last frame at or above the threshold, each decided on the first frame the
minimum durations allow, with silero's hysteresis (threshold - 0.15)."""
from __future__ import annotations

import pytest

from services.vad.segmenter import Segmenter, SegmenterParams, SpeechPaused, SpeechStart, SpeechStop

F = 32  # ms per frame


def run(probs: list[float], **kw) -> list:
    seg = Segmenter(SegmenterParams(**kw), frame_ms=F)
    events = []
    for p in probs:
        ev = seg.push(p)
        if ev is not None:
            events.append(ev)
    tail = seg.finish()
    return events + ([tail] if tail else [])


def test_start_and_stop_times_are_frame_exact():
    # 10 silent frames, 20 voiced, 10 silent.
    probs = [0.05] * 10 + [0.9] * 20 + [0.05] * 10
    ev = run(probs, min_speech_ms=150, min_silence_ms=200, prefix_padding_ms=300)
    onset = 10 * F
    # 150 ms needs 5 frames (160 ms): decided at the end of the 5th voiced frame.
    assert ev[0] == SpeechStart(onset, onset - 300, onset + 5 * F)
    end = 30 * F
    # 200 ms of silence needs 7 frames (224 ms).
    assert ev[1] == SpeechStop(end, end + 7 * F)
    assert len(ev) == 2


def test_padding_is_clamped_at_zero():
    ev = run([0.9] * 10 + [0.0] * 10, prefix_padding_ms=300)
    assert ev[0].audio_ms == 0 and ev[0].padded_start_ms == 0


def test_short_blip_is_not_speech():
    # 4 voiced frames = 128 ms < 150 ms: never starts.
    assert run([0.0] * 5 + [0.9] * 4 + [0.0] * 20, min_speech_ms=150) == []


def test_candidate_dies_on_a_frame_below_the_low_threshold():
    probs = [0.9] * 3 + [0.3] + [0.9] * 3 + [0.0] * 20
    assert run(probs, min_speech_ms=150) == []
    # The same pattern with the dip above threshold - 0.15 (0.35) keeps going.
    probs2 = [0.9] * 3 + [0.4] + [0.9] * 3 + [0.0] * 20
    ev = run(probs2, min_speech_ms=150)
    assert ev[0].audio_ms == 0 and ev[0].decided_at_ms == 5 * F


def test_hysteresis_keeps_speech_between_thresholds():
    # After the start, frames at 0.4 (between 0.35 and 0.5) keep the segment
    # open, but the reported end is the last frame >= threshold.
    probs = [0.9] * 10 + [0.4] * 20 + [0.0] * 10
    ev = run(probs, min_silence_ms=200)
    assert len(ev) == 2
    assert ev[1] == SpeechStop(10 * F, 30 * F + 7 * F)


def test_silence_run_resets_only_on_a_frame_at_threshold():
    # Silence starts at 0.2; a 0.45 frame (middle band) counts as silence
    # (as in silero), a 0.8 frame ends the silence run.
    probs = [0.9] * 10 + [0.2] * 3 + [0.45] * 3 + [0.2] * 2 + [0.0] * 5
    ev = run(probs, min_silence_ms=200)
    assert ev[1] == SpeechStop(10 * F, 10 * F + 7 * F)
    probs2 = [0.9] * 10 + [0.2] * 3 + [0.8] + [0.0] * 20
    ev2 = run(probs2, min_silence_ms=200)
    assert ev2[1] == SpeechStop(14 * F, 14 * F + 7 * F)


def test_pause_comes_on_the_first_unvoiced_frame_and_the_stop_keeps_its_time():
    probs = [0.05] * 5 + [0.9] * 10 + [0.4] + [0.05] * 10
    ev = run(probs, min_silence_ms=128, pause_events=True)
    end = 15 * F
    assert ev[1] == SpeechPaused(end, end + F)          # a 0.4 frame (middle band) is unvoiced
    assert ev[2] == SpeechStop(end, 16 * F + 4 * F)     # silence run from the 0.05 frames
    assert len(ev) == 3


def test_one_pause_per_voiced_run_and_none_by_default():
    # voiced, two unvoiced frames, voiced again, then the end: two pauses, one stop.
    probs = [0.9] * 10 + [0.1] * 2 + [0.9] * 5 + [0.0] * 10
    ev = run(probs, min_silence_ms=128, pause_events=True)
    assert [type(e) for e in ev] == [SpeechStart, SpeechPaused, SpeechPaused, SpeechStop]
    assert ev[1].audio_ms == 10 * F and ev[2].audio_ms == 17 * F == ev[3].audio_ms
    assert [type(e) for e in run(probs, min_silence_ms=128)] == [SpeechStart, SpeechStop]


def test_two_segments():
    probs = ([0.0] * 5 + [0.9] * 10) * 2 + [0.0] * 10
    ev = run(probs, min_silence_ms=100)
    assert [type(e) for e in ev] == [SpeechStart, SpeechStop, SpeechStart, SpeechStop]
    assert [e.audio_ms for e in ev] == [5 * F, 15 * F, 20 * F, 30 * F]


def test_end_of_stream_closes_an_open_segment():
    ev = run([0.9] * 10)
    assert ev[-1] == SpeechStop(10 * F, 10 * F)


def test_zero_minimums_decide_on_the_first_frame():
    ev = run([0.0, 0.9, 0.0], min_speech_ms=0, min_silence_ms=0)
    assert ev == [SpeechStart(F, 0, 2 * F), SpeechStop(2 * F, 3 * F)]


@pytest.mark.parametrize("kw, word", [
    ({"threshold": 0.0}, "threshold"), ({"threshold": 1.0}, "threshold"),
    ({"threshold": float("nan")}, "threshold"), ({"min_speech_ms": -1}, "min_speech_ms"),
    ({"min_silence_ms": -5}, "min_silence_ms"), ({"prefix_padding_ms": -1}, "prefix_padding_ms"),
])
def test_bad_params_say_which_field(kw, word):
    with pytest.raises(ValueError, match=word):
        SegmenterParams(**kw)


def run_q(frames: list[tuple[float, bool]], **kw) -> list:
    """Frames as (probability, quiet)."""
    seg = Segmenter(SegmenterParams(**kw), frame_ms=F)
    return [ev for p, q in frames if (ev := seg.push(p, q)) is not None]


def test_quiet_frames_end_speech_where_the_sound_ended_not_where_silero_let_go():
    # 10 voiced frames, then silero's hangover: 6 frames still >= threshold but quiet, then silence.
    frames = [(0.9, False)] * 10 + [(0.95, True)] * 6 + [(0.05, True)] * 10
    ev = run_q(frames, min_speech_ms=150, min_silence_ms=200, pause_events=True)
    end = 10 * F
    # the pause on the 3rd quiet frame (96 ms: no consonant's closure is that long), at the sound's end
    assert ev[1] == SpeechPaused(end, end + 3 * F)
    # the stop waits for silero's silence (from frame 16): 200 ms of it, 7 frames
    assert ev[2] == SpeechStop(end, 16 * F + 7 * F)
    # without the energy's word, silero's hangover ends speech 6 frames (192 ms) later
    ev = run_q([(p, False) for p, _ in frames], min_speech_ms=150, min_silence_ms=200, pause_events=True)
    assert ev[1] == SpeechPaused(end + 6 * F, end + 7 * F) and ev[2].audio_ms == end + 6 * F


def test_a_short_quiet_run_inside_speech_is_a_closure_not_a_pause():
    frames = [(0.9, False)] * 10 + [(0.9, True)] * 2 + [(0.9, False)] * 5 + [(0.05, False)] * 10
    ev = run_q(frames, min_speech_ms=150, min_silence_ms=200, pause_events=True)
    end = 17 * F
    assert ev[1:] == [SpeechPaused(end, end + F), SpeechStop(end, end + 7 * F)]


def test_speech_after_a_quiet_pause_continues_the_segment():
    frames = ([(0.9, False)] * 10 + [(0.9, True)] * 4 + [(0.9, False)] * 5
              + [(0.9, True)] * 3 + [(0.1, True)] * 7)
    # a quiet pause as long as min_silence is no stop while silero still hears speech
    assert not any(isinstance(e, SpeechStop) for e in run_q([(0.9, False)] * 10 + [(0.9, True)] * 9
                                                          + [(0.9, False)] * 3))
    ev = run_q(frames, min_speech_ms=150, min_silence_ms=200, pause_events=True)
    assert [type(e) for e in ev] == [SpeechStart, SpeechPaused, SpeechPaused, SpeechStop]
    assert ev[1].audio_ms == 10 * F and ev[2].audio_ms == ev[3].audio_ms == 19 * F


def test_quiet_frames_do_not_start_or_hold_a_candidate():
    # quiet says nothing about onsets: silero decides those alone
    frames = [(0.05, True)] * 3 + [(0.9, True)] * 6 + [(0.05, True)] * 10
    ev = run_q(frames, min_speech_ms=150, min_silence_ms=200)
    assert isinstance(ev[0], SpeechStart) and ev[0].audio_ms == 3 * F


def test_the_stop_is_silero_s_call_a_quiet_frame_it_hears_ends_a_silence_run():
    # a dip (4 frames), a breath silero calls speech (quiet, 4 frames), a dip, then speech:
    # without the reset the 8 dip frames would make a stop (a segment split at a breath)
    frames = ([(0.9, False)] * 10 + [(0.05, True)] * 4 + [(0.9, True)] * 4 + [(0.05, True)] * 4
              + [(0.9, False)] * 5 + [(0.05, False)] * 10)
    ev = run_q(frames, min_speech_ms=150, min_silence_ms=200)
    stops = [e for e in ev if isinstance(e, SpeechStop)]
    assert len(stops) == 1 and stops[0].audio_ms == 27 * F
