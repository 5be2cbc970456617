"""The TTS engine streams each clause's audio in order as soon as it exists,
in chunks of at most chunk_ms, with clause_text on each clause's first chunk
and `last` only on the final one; closing the stream (what a gRPC cancel
does) stops synthesis before the next clause; resampling yields the asked
rate; bad requests raise ValueError naming the problem. A scripted fake
voice behind the real Voice interface stands in for piper."""
from __future__ import annotations

import asyncio
import threading

import pytest

from common.text import split_clauses
from services.tts.engine import SynthesisReport, SynthesisRequest, TtsEngine
from services.tts.voices import VoiceInfo

RATE = 22050


class ScriptedVoice:
    """Fake voice: each clause gives 10 ms of audio per character, made of a
    per-clause constant sample value so tests can tell clauses apart. It can
    block on a clause until the test releases it."""

    def __init__(self, rate: int = RATE, gate_from: int | None = None) -> None:
        self.info = VoiceInfo("fake-voice", "en_US", rate, "scripted")
        self.default_length_scale = 1.0
        self.calls: list[tuple[str, float]] = []
        self.gate_from = gate_from           # clause number that waits for `release`
        self.release = threading.Event()
        self.reached_gate = threading.Event()

    def synthesize(self, text: str, length_scale: float):
        n = len(self.calls)
        self.calls.append((text, length_scale))
        if self.gate_from is not None and n >= self.gate_from:
            self.reached_gate.set()
            assert self.release.wait(10), "test never released the voice"
        samples = int(len(text) * 0.010 * self.info.sample_rate * length_scale)
        value = (n + 1) * 100
        yield value.to_bytes(2, "little", signed=True) * samples


def engine(voice: ScriptedVoice | None = None, **kw) -> TtsEngine:
    v = voice or ScriptedVoice()
    return TtsEngine({v.info.id: v}, **kw)


async def collect(eng: TtsEngine, req: SynthesisRequest, report: SynthesisReport | None = None):
    return [p async for p in eng.stream(eng.prepare(req), report)]


TEXT = "Hello there. The quick brown fox, which was very fast, jumped over the lazy dog; then it ran away!"


async def test_clauses_stream_in_order_with_text_on_first_chunk():
    voice = ScriptedVoice()
    eng = engine(voice, chunk_ms=200)
    report = SynthesisReport()
    pieces = await collect(eng, SynthesisRequest(TEXT), report)
    clauses = split_clauses(TEXT)
    assert [c for c, _ in voice.calls] == clauses
    assert [p.clause_index for p in pieces] == sorted(p.clause_index for p in pieces)
    firsts = {}
    for p in pieces:
        firsts.setdefault(p.clause_index, p)
    assert [firsts[i].clause_text for i in range(len(clauses))] == clauses
    assert all(p.clause_text == "" for p in pieces if firsts[p.clause_index] is not p)
    assert [p.last for p in pieces] == [False] * (len(pieces) - 1) + [True]
    max_bytes = int(RATE * 0.2) * 2
    assert all(0 < len(p.audio) <= max_bytes for p in pieces[:-1])
    # Every sample of every clause arrives, in clause order.
    audio = b"".join(p.audio for p in pieces)
    expected = b"".join(((i + 1) * 100).to_bytes(2, "little", signed=True) * int(len(c) * 0.010 * RATE)
                        for i, c in enumerate(clauses))
    assert audio == expected
    assert report.clauses_done == len(clauses) and report.characters == sum(map(len, clauses))
    assert not report.cancelled


async def test_first_audio_leaves_before_later_clauses_are_synthesised():
    voice = ScriptedVoice(gate_from=1)  # clause 1 blocks until released
    eng = engine(voice)
    it = eng.stream(eng.prepare(SynthesisRequest(TEXT)))
    first = await asyncio.wait_for(it.__anext__(), 5)
    assert first.clause_index == 0 and first.clause_text == "Hello there."
    voice.release.set()
    rest = [p async for p in it]
    assert rest[-1].last


async def test_closing_the_stream_stops_before_the_next_clause():
    voice = ScriptedVoice(gate_from=2)
    eng = engine(voice)
    report = SynthesisReport()
    it = eng.stream(eng.prepare(SynthesisRequest(TEXT)), report)
    got = [await it.__anext__()]
    while got[-1].clause_index < 1:
        got.append(await it.__anext__())
    await asyncio.to_thread(voice.reached_gate.wait, 5)  # worker is inside clause 2
    closing = asyncio.ensure_future(it.aclose())
    await asyncio.sleep(0.05)
    voice.release.set()
    await asyncio.wait_for(closing, 5)
    # Clause 2 was already running when the cancel came; nothing after it ran.
    assert len(voice.calls) == 3 < len(split_clauses(TEXT))
    assert report.cancelled and report.clauses_done <= 3


async def test_cancel_flag_from_another_thread_stops_the_worker():
    voice = ScriptedVoice(gate_from=1)
    eng = engine(voice)
    cancel = threading.Event()
    report = SynthesisReport()
    it = eng.stream(eng.prepare(SynthesisRequest(TEXT)), report, cancel)
    await it.__anext__()
    await asyncio.to_thread(voice.reached_gate.wait, 5)
    cancel.set()
    voice.release.set()
    rest = [p async for p in it]
    assert len(voice.calls) == 2
    assert not any(p.last for p in rest)
    assert report.cancelled


async def test_speaking_rate_sets_length_scale():
    voice = ScriptedVoice()
    eng = engine(voice)
    await collect(eng, SynthesisRequest("One two three.", speaking_rate=2.0))
    await collect(eng, SynthesisRequest("One two three.", speaking_rate=0.5))
    await collect(eng, SynthesisRequest("One two three.", speaking_rate=0))
    assert [ls for _, ls in voice.calls] == [0.5, 2.0, 1.0]


async def test_resampling_to_the_requested_rate():
    eng = engine(ScriptedVoice())
    pieces = await collect(eng, SynthesisRequest("A sentence of some length here.", sample_rate_hz=16000))
    assert {p.sample_rate for p in pieces} == {16000}
    n = sum(len(p.audio) for p in pieces) // 2
    native = int(len("A sentence of some length here.") * 0.010 * RATE)
    assert abs(n - native * 16000 / RATE) <= 16000 * 0.005


@pytest.mark.parametrize("req, words", [
    (SynthesisRequest(""), "text is empty"),
    (SynthesisRequest("   \n\t"), "text is empty"),
    (SynthesisRequest("x" * 101), "101 characters, over the limit of 100"),
    (SynthesisRequest("hi", voice="nobody"), "unknown voice 'nobody': known voices are fake-voice"),
    (SynthesisRequest("hi", speaking_rate=2.5), "speaking_rate 2.5 is out of range"),
    (SynthesisRequest("hi", speaking_rate=0.25), "speaking_rate 0.25 is out of range"),
    (SynthesisRequest("hi", speaking_rate=-1), "speaking_rate -1"),
    (SynthesisRequest("hi", sample_rate_hz=4000), "sample_rate_hz 4000 is not supported"),
    (SynthesisRequest("hi", sample_rate_hz=96000), "sample_rate_hz 96000 is not supported"),
])
def test_bad_requests_say_what_is_wrong(req, words):
    with pytest.raises(ValueError) as err:
        engine(max_chars=100).prepare(req)
    assert words in str(err.value)


def test_limits_are_inclusive():
    eng = engine(max_chars=100)
    eng.prepare(SynthesisRequest("x" * 100, speaking_rate=2.0, sample_rate_hz=48000))
    eng.prepare(SynthesisRequest("x", speaking_rate=0.5, sample_rate_hz=8000))


def test_voice_list_and_default():
    a, b = ScriptedVoice(), ScriptedVoice(rate=16000)
    b.info = VoiceInfo("other", "de_DE", 16000, "second")
    eng = TtsEngine({a.info.id: a, b.info.id: b}, default_voice="other")
    assert [v.id for v in eng.list_voices()] == ["fake-voice", "other"]
    assert eng.default_voice == "other"
    with pytest.raises(ValueError, match="default voice 'x'"):
        TtsEngine({a.info.id: a}, default_voice="x")
