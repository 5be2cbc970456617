"""A real VAD service process, driven over gRPC with real human speech, finds
exactly one speech segment in each LibriVox clip padded with 1 s of silence,
with its start and stop within 100 ms of the true boundaries; every malformed
stream is rejected with INVALID_ARGUMENT and a message naming the problem,
while another stream running at the same time is unaffected. With
pause_events, speech_paused events come inside the segment, the last one
naming the stop's end of speech before the stop is decided; without them
(the default) there are none. With end_of_turn, each stop carries the
end-of-turn model's probability. With progress_ms the stream also answers
each progress_ms of processed audio that brought no event, so a client can
tell a quiet room from a hung VAD; the events are the same.

The true boundaries come from the waveform, not from the VAD: a two-level
energy endpointer in the style of Rabiner & Sambur (1975). Per 20 ms window
(10 ms hop) it measures the energy of a voiced band (100-2000 Hz) and of a
fricative band (2-8 kHz); each band's noise floor is its 10th percentile over
the clip. The speech core is the voiced-band energy 12 dB or more above its
floor for at least 30 ms (breaths and clicks before a sentence are unvoiced,
so they make no core); the boundaries then extend outward through contiguous
windows where either band stays 3 dB above its floor, which keeps a
sentence's weak ends (the /h/ of "he", the /f/ of "himself", the nasal of
"them") inside the speech, as a listener would hear it."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

import grpc
import numpy as np
import pytest

from common.audio import read_wav, silence
from common.stubs import common_pb2, vad_pb2, vad_pb2_grpc
from tests.procs import clips, running

PAD_MS = 1000
TOLERANCE_MS = 100
CHUNK_BYTES = 3200  # 100 ms, not a multiple of the 512-sample frame


def _band_db(x: np.ndarray, rate: int = 16000, win_ms: int = 20, hop_ms: int = 10):
    win, hop = rate * win_ms // 1000, rate * hop_ms // 1000
    pad = (win - hop) // 2  # centre each window on its 10 ms hop
    xp = np.concatenate([np.zeros(pad), x.astype(np.float64), np.zeros(win)])
    n = len(x) // hop
    frames = xp[np.arange(n)[:, None] * hop + np.arange(win)[None, :]] * np.hanning(win)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    f = np.fft.rfftfreq(win, 1 / rate)
    return [10 * np.log10(power[:, (f >= lo) & (f < hi)].sum(axis=1) + 1e-9)
            for lo, hi in ((100, 2000), (2000, rate / 2 + 1))]


def true_boundaries(pcm: bytes, core_db: float = 12.0, extend_db: float = 3.0) -> tuple[int, int]:
    """(first, last) ms of speech in a clip, from its waveform alone."""
    x = np.frombuffer(pcm, dtype="<i2")
    voiced, fricative = _band_db(x)
    core = voiced > np.percentile(voiced, 10) + core_db
    weak = (voiced > np.percentile(voiced, 10) + extend_db) | \
           (fricative > np.percentile(fricative, 10) + extend_db)
    runs, i = [], 0
    while i < len(core):
        j = i
        while j < len(core) and core[j]:
            j += 1
        if j - i >= 3:
            runs.append((i, j))
        i = max(j, i + 1)
    a, b = runs[0][0], runs[-1][1]
    while a > 0 and weak[a - 1]:
        a -= 1
    while b < len(weak) and weak[b]:
        b += 1
    return a * 10, b * 10


@pytest.fixture(scope="module")
def vad():
    with running("services.vad", "VAD_") as svc:
        yield svc


async def detect(address: str, audio: bytes, config: vad_pb2.VadConfig | None = None,
                 chunk: int = CHUNK_BYTES) -> list[vad_pb2.DetectResponse]:
    async def requests() -> AsyncIterator[vad_pb2.DetectRequest]:
        yield vad_pb2.DetectRequest(config=config or vad_pb2.VadConfig())
        for i in range(0, len(audio), chunk):
            yield vad_pb2.DetectRequest(audio=audio[i:i + chunk])

    async with grpc.aio.insecure_channel(address) as ch:
        stub = vad_pb2_grpc.VoiceActivityStub(ch)
        return [r async for r in stub.StreamingDetect(requests(), timeout=60)]


@pytest.mark.slow
@pytest.mark.parametrize("clip", clips(), ids=lambda c: c[0].stem)
def test_speech_found_within_100ms_of_true_boundaries(vad, clip):
    pcm, rate = read_wav(clip[0])
    assert rate == 16000
    first, last = true_boundaries(pcm)
    clip_ms = len(pcm) // 32
    # The waveform boundaries must be plausible on their own: inside the clip,
    # covering most of it (these clips are trimmed sentences).
    assert 0 <= first < last <= clip_ms and last - first > 0.7 * clip_ms
    truth_start, truth_stop = PAD_MS + first, PAD_MS + last

    events = asyncio.run(detect(vad.address, silence(PAD_MS, rate) + pcm + silence(PAD_MS, rate)))
    kinds = [r.WhichOneof("event") for r in events]
    starts = [r.speech_started for r in events if r.HasField("speech_started")]
    stops = [r.speech_stopped for r in events if r.HasField("speech_stopped")]
    print(f"{clip[0].stem}: true {truth_start}-{truth_stop} ms, "
          f"vad {[s.audio_ms for s in starts]}-{[s.audio_ms for s in stops]} ms")
    assert kinds == ["speech_started", "speech_stopped"]
    start, stop = starts[0], stops[0]
    assert abs(start.audio_ms - truth_start) <= TOLERANCE_MS
    assert abs(stop.audio_ms - truth_stop) <= TOLERANCE_MS
    assert start.padded_start_ms == start.audio_ms - 300
    # Decided as early as the defaults allow: 150 ms of speech (5 frames),
    # 200 ms of silence (7 frames), counted in whole 32 ms frames.
    assert start.audio_ms + 150 <= start.decided_at_ms <= start.audio_ms + 150 + 32 * 3
    assert stop.audio_ms + 200 <= stop.decided_at_ms <= stop.audio_ms + 200 + 32 * 4
    # The stop was decided while the trailing silence was streaming, not at the end.
    assert stop.decided_at_ms < PAD_MS + clip_ms + PAD_MS


@pytest.mark.slow
@pytest.mark.parametrize("clip", clips(), ids=lambda c: c[0].stem)
def test_pause_events_come_before_the_stop_and_change_nothing_else(vad, clip):
    """With pause_events the stream gains speech_paused events inside the segment;
    the last one before the stop names the same end of speech, one silence
    window earlier. Without them (the default) the stream has none, and the
    start and stop are the same either way."""
    pcm, _ = read_wav(clip[0])
    audio = silence(PAD_MS, 16000) + pcm + silence(PAD_MS, 16000)
    plain = asyncio.run(detect(vad.address, audio))
    paused = asyncio.run(detect(vad.address, audio, vad_pb2.VadConfig(pause_events=True)))

    assert [r.WhichOneof("event") for r in plain] == ["speech_started", "speech_stopped"]
    kinds = [r.WhichOneof("event") for r in paused]
    print(f"{clip[0].stem}: {kinds}")
    assert kinds[0] == "speech_started" and kinds[-1] == "speech_stopped"
    assert set(kinds[1:-1]) == {"speech_paused"}          # at least one, nothing else in between
    # Pauses only add events: the segment itself is decided exactly as without them.
    assert paused[0].speech_started == plain[0].speech_started
    assert paused[-1].speech_stopped == plain[-1].speech_stopped

    start, stop = paused[0].speech_started, paused[-1].speech_stopped
    pauses = [r.speech_paused for r in paused[1:-1]]
    for r in paused[1:-1]:
        assert r.audio_processed_ms >= r.speech_paused.decided_at_ms
    for p in pauses:
        # Seen on the first unvoiced frame after the voiced end, or, where the
        # energy rule applies (the floor is known from the clip's lead-in, 256 ms
        # of it), on the third quiet frame (QUIET_FRAMES): whole 32 ms frames,
        # one to three of them after the voiced end.
        lag = p.decided_at_ms - p.audio_ms
        assert lag in (32, 64, 96), p
        assert start.audio_ms < p.audio_ms <= stop.audio_ms
    # One pause per voiced run: each names a later end of speech than the one before.
    assert [p.audio_ms for p in pauses] == sorted({p.audio_ms for p in pauses})
    last = pauses[-1]
    assert last.audio_ms == stop.audio_ms
    # The stop needs min_silence_ms (200 ms, whole 32 ms frames) after the silence
    # run began, which is at or after the pause frame's start.
    assert stop.decided_at_ms - last.decided_at_ms >= 200 - 32, (last, stop)


@pytest.mark.slow
def test_end_of_turn_scores_each_stop_and_changes_nothing_else(vad):
    """With end_of_turn each stop carries the Smart Turn probability of its
    pause (0-1); the events are the same as without it (pauses stay internal),
    and a stream without it gets no probability."""
    pcm, _ = read_wav(clips()[2][0])
    half = len(pcm) // 4 * 2
    audio = silence(PAD_MS, 16000) + pcm[:half] + silence(700, 16000) + pcm[half:] + silence(PAD_MS, 16000)
    plain = asyncio.run(detect(vad.address, audio))
    scored = asyncio.run(detect(vad.address, audio, vad_pb2.VadConfig(end_of_turn=True)))
    assert [r.WhichOneof("event") for r in scored] == [r.WhichOneof("event") for r in plain]
    stops = [r.speech_stopped for r in scored if r.HasField("speech_stopped")]
    assert len(stops) == 2
    print("turn_complete_probability:", [round(s.turn_complete_probability, 3) for s in stops])
    for s in stops:
        assert s.HasField("turn_complete_probability") and 0.0 <= s.turn_complete_probability <= 1.0
    assert not any(r.speech_stopped.HasField("turn_complete_probability") for r in plain
                   if r.HasField("speech_stopped"))


async def _expect_invalid(address: str, requests: list[vad_pb2.DetectRequest], needle: str) -> None:
    async def gen():
        for r in requests:
            yield r

    async with grpc.aio.insecure_channel(address) as ch:
        stub = vad_pb2_grpc.VoiceActivityStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.StreamingDetect(gen(), timeout=30):
                pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details(), err.value.details()


@pytest.mark.slow
def test_progress_acknowledges_each_second_without_an_event_and_changes_nothing_else(vad):
    pcm, _ = read_wav(clips()[1][0])
    audio = silence(3000, 16000) + pcm + silence(3000, 16000)
    plain = asyncio.run(detect(vad.address, audio))
    got = asyncio.run(detect(vad.address, audio, vad_pb2.VadConfig(progress_ms=1000)))
    events = [r for r in got if r.WhichOneof("event")]
    assert events == plain and [r.WhichOneof("event") for r in plain] == ["speech_started", "speech_stopped"]
    # Never more than a second between answers, plus the 100 ms message that
    # crosses it and the 32 ms frame that message may leave unfinished.
    marks = [0] + [r.audio_processed_ms for r in got]
    print("answers at", marks)
    assert max(b - a for a, b in zip(marks, marks[1:])) <= 1000 + 100 + 32
    assert len(got) - len(events) >= 4          # 3 s of silence before the speech, 3 s after
    assert marks[-1] >= len(audio) // 32 - 1100


AUDIO = vad_pb2.DetectRequest(audio=silence(100, 16000))
CFG = vad_pb2.DetectRequest(config=vad_pb2.VadConfig())

MALFORMED = {
    "audio_before_config": ([AUDIO], "first message must be config"),
    "no_config_at_all": ([], "first message must be config"),
    "config_twice": ([CFG, AUDIO, CFG], "config sent twice"),
    "sample_rate_8k": ([vad_pb2.DetectRequest(config=vad_pb2.VadConfig(sample_rate_hz=8000))],
                       "sample_rate_hz must be 16000"),
    "threshold_above_1": ([vad_pb2.DetectRequest(config=vad_pb2.VadConfig(threshold=1.5))], "threshold"),
    "threshold_negative": ([vad_pb2.DetectRequest(config=vad_pb2.VadConfig(threshold=-0.2))], "threshold"),
    "negative_min_speech": ([vad_pb2.DetectRequest(config=vad_pb2.VadConfig(min_speech_ms=-10))],
                            "min_speech_ms must not be negative"),
    "negative_min_silence": ([vad_pb2.DetectRequest(config=vad_pb2.VadConfig(min_silence_ms=-1))],
                             "min_silence_ms must not be negative"),
    "negative_padding": ([vad_pb2.DetectRequest(config=vad_pb2.VadConfig(prefix_padding_ms=-300))],
                         "prefix_padding_ms must not be negative"),
    "progress_too_often": ([vad_pb2.DetectRequest(config=vad_pb2.VadConfig(progress_ms=10))],
                           "progress_ms must be 0 (off) or 100-60000, got 10"),
    "odd_byte_count": ([CFG, vad_pb2.DetectRequest(audio=b"\x00" * 1001)], "1001 bytes, an odd count"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_stream_is_rejected_and_others_continue(vad, name):
    requests, needle = MALFORMED[name]
    pcm, _ = read_wav(clips()[1][0])
    good_audio = silence(PAD_MS, 16000) + pcm + silence(PAD_MS, 16000)

    async def both():
        good = asyncio.create_task(detect(vad.address, good_audio))
        try:
            await _expect_invalid(vad.address, requests, needle)
        finally:
            events = await good
        return events

    events = asyncio.run(both())
    assert [r.WhichOneof("event") for r in events] == ["speech_started", "speech_stopped"]


def test_status_counts_streams(vad):
    async def go():
        async with grpc.aio.insecure_channel(vad.address) as ch:
            stub = vad_pb2_grpc.VoiceActivityStub(ch)
            before = await stub.GetStatus(common_pb2.StatusRequest())
            await detect(vad.address, silence(500, 16000))
            await _expect_invalid(vad.address, [AUDIO], "first message must be config")
            after = await stub.GetStatus(common_pb2.StatusRequest())
            return before, after

    before, after = asyncio.run(go())
    assert after.service == "vad" and after.active_streams == 0
    assert after.completed_streams == before.completed_streams + 1
    assert after.failed_streams == before.failed_streams + 1
