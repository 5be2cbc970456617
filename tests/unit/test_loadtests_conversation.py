"""The load test's figures are the protocol's own times, and its person is
paced like a person: driven by a scripted event log on a virtual clock (no
sockets, no sleeps), the Speaker reports voice_to_voice = first audio delta −
last voiced sample, final_transcript = transcription.completed − that sample,
listens for exactly the audio it received before the truncate and the next
question, measures barge-in reaction from the interruption's first voiced
sample to output_audio_buffer.cleared, and names every failed turn by its
code (timeout, server error, failed reply, split question)."""
from __future__ import annotations

import json
import random

import pytest

from clients.clips import Clip
from clients.eventlog import EventLog
from clients.speech import VoicedSpan
from loadtests.conversation import Pacing, Speaker, TurnFailed, connect_failure

RATE, OUT = 16000, 24000
T0 = 100.0
# 1 s clip, voiced from 0.1 s to 0.9 s: the question ends (last voiced sample) at T0 + 0.9
CLIP = Clip("q", b"\x01\x00" * RATE, RATE, VoicedSpan(1600, 14399, RATE), "question")
LAST = T0 + 14399 / RATE
ONSET = 1600 / RATE


class VirtualClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


class ScriptedSession:
    """Events appear in the log when the virtual clock reaches their time;
    waiting moves the clock to the next event (or to the deadline)."""

    def __init__(self, clock: VirtualClock, script: list[tuple[float, dict]]) -> None:
        self.clock, self.script = clock, sorted(script, key=lambda x: x[0])
        self._log = EventLog()
        self.sent: list[tuple[float, dict]] = []

    @property
    def log(self) -> EventLog:
        """What a background reader would have logged by now."""
        self._advance()
        return self._log

    def _advance(self) -> None:
        while self.script and self.script[0][0] <= self.clock.t:
            t, data = self.script.pop(0)
            self._log.add(data, t)

    def mark(self) -> int:
        return len(self.log)

    def send(self, event: dict) -> str:
        self.sent.append((self.clock.t, event))
        return "evt"

    def wait_for(self, type_=None, *, timeout=30, where=None, since=0):
        deadline = self.clock.t + timeout
        while True:
            self._advance()
            ev = self._log.find(type_, where, since)
            if ev is not None:
                return ev
            if not self.script or self.script[0][0] > deadline:
                self.clock.t = deadline
                raise TimeoutError(f"no {type_}")
            self.clock.t = self.script[0][0]


class Utt:
    def __init__(self, start: float) -> None:
        self.start = start

    def time_of(self, offset: int) -> float:
        return self.start + offset / RATE


class FakeMic:
    """Clips play back to back from now, at real time."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock, self.free = clock, 0.0
        self.played: list[float] = []

    def play(self, pcm: bytes) -> Utt:
        start = max(self.clock.t, self.free)
        self.free = start + len(pcm) / 2 / RATE
        self.played.append(start)
        return Utt(start)


def answer(t_first: float, audio_s: float, rid: str = "r1", done_at: float | None = None,
           status: str = "completed", deltas: int = 4) -> list[tuple[float, dict]]:
    """A reply: audio_s seconds of 24 kHz audio in ``deltas`` deltas, 0.1 s apart."""
    per = int(audio_s * OUT * 2) // deltas
    out = [(t_first + 0.1 * i, {"type": "response.output_audio.delta", "response_id": rid,
                                "item_id": f"item_{rid}", "bytes": per}) for i in range(deltas)]
    out.append((done_at or t_first + 0.1 * deltas, {"type": "response.done",
                                                     "response": {"id": rid, "status": status}}))
    return out


def transcript(t: float) -> tuple[float, dict]:
    return (t, {"type": "conversation.item.input_audio_transcription.completed", "item_id": "u"})


def speaker(script, pacing: Pacing = Pacing(barge_in_share=0.0, think_s=(1.0, 1.0))):
    clock = VirtualClock()
    sess = ScriptedSession(clock, script)
    mic = FakeMic(clock)
    reports: list[tuple[str, float, Exception | None]] = []
    sp = Speaker(sess, mic, [CLIP], clock, lambda n, ms, e: reports.append((n, ms, e)), pacing,
                 random.Random(1))
    return sp, sess, clock, mic, reports


def figures(reports):
    return {n: (round(ms, 3), e) for n, ms, e in reports}


def test_turn_figures_are_the_protocol_times_and_the_whole_answer_is_heard():
    script = [transcript(LAST + 0.30)] + answer(LAST + 0.65, audio_s=2.0)
    sp, sess, clock, mic, reports = speaker(script)
    sp.turn()
    f = figures(reports)
    assert f["voice_to_voice"] == (650.0, None)
    assert f["final_transcript"] == (300.0, None)
    # listened from the first delta for the 2.0 s of audio received, then the truncate
    t_end = LAST + 0.65 + 2.0
    assert f["turn"] == (pytest.approx(2650.0), None)
    (t_sent, ev), = sess.sent
    assert t_sent == pytest.approx(t_end)
    assert ev == {"type": "conversation.item.truncate", "item_id": "item_r1", "content_index": 0,
                  "audio_end_ms": 2000}
    # then a second of thought before the next question
    assert clock.t == pytest.approx(t_end + 1.0)
    sp.turn()
    assert mic.played[1] == pytest.approx(t_end + 1.0)


def test_the_servers_breakdown_is_reported_from_response_done():
    timings = json.dumps({"asr_final_ms": 312.5, "llm_first_token_ms": 150.0, "voice_to_voice_ms": 640.0,
                          "not_a_stage_ms": 1.0})
    script = [transcript(LAST + 0.30)] + answer(LAST + 0.65, audio_s=1.0)
    script[-1][1]["response"]["metadata"] = {"timings": timings}
    sp, _, _, _, reports = speaker(script)
    sp.turn()
    f = figures(reports)
    assert f["server/asr_final"] == (312.5, None) and f["server/llm_first_token"] == (150.0, None)
    assert f["server/voice_to_voice"] == (640.0, None)
    assert f["client_lag"] == (10.0, None)      # the client heard it at 650 ms, the server says 640
    assert not any(n.startswith("server/not_a") for n in f)
    # a reply without timings (or with garbage) reports none and still completes the turn
    script = [transcript(LAST + 0.30)] + answer(LAST + 0.65, audio_s=1.0)
    script[-1][1]["response"]["metadata"] = {"timings": "{not json"}
    sp, _, _, _, reports = speaker(script)
    sp.turn()
    assert "turn" in figures(reports) and not any(n.startswith("server/") for n in figures(reports))
    assert "client_lag" not in figures(reports)


def test_a_reply_that_outlasts_its_audio_is_heard_until_it_is_done():
    script = [transcript(LAST + 0.2)] + answer(LAST + 0.5, audio_s=0.4, done_at=LAST + 3.0)
    sp, sess, clock, _, reports = speaker(script)
    sp.turn()
    assert sess.sent[0][0] == pytest.approx(LAST + 3.0)
    assert sess.sent[0][1]["audio_end_ms"] == 400


def test_an_answer_longer_than_the_timeout_is_heard_to_its_end():
    pacing = Pacing(barge_in_share=0.0, turn_timeout_s=5.0, think_s=(1.0, 1.0))
    script = [transcript(LAST + 0.3)] + answer(LAST + 0.6, audio_s=12.0, deltas=120)
    sp, sess, _, _, reports = speaker(script, pacing)
    sp.turn()
    assert figures(reports)["turn"] == (pytest.approx(12600.0), None)
    assert sess.sent[0][1]["audio_end_ms"] == 12000


def test_an_answer_that_stalls_fails_the_turn():
    pacing = Pacing(barge_in_share=0.0, turn_timeout_s=5.0, think_s=(1.0, 1.0))
    script = [transcript(LAST + 0.3)] + answer(LAST + 0.6, audio_s=2.0, deltas=2, done_at=LAST + 20)
    sp, _, clock, _, reports = speaker(script, pacing)
    sp.turn()
    name, _, exc = reports[-1]
    assert name == "turn" and exc.code == "timeout" and "stalled" in str(exc)
    assert clock.t == pytest.approx(LAST + 0.7 + 5.0 + 1.0)   # 5 s after the last delta, then thinking


def test_audio_before_the_question_ended_is_not_its_answer():
    early = answer(LAST - 0.5, audio_s=0.2, rid="early", status="cancelled", deltas=1)
    script = early + [transcript(LAST + 0.3)] + answer(LAST + 0.8, audio_s=1.0)
    sp, _, _, _, reports = speaker(script)
    sp.turn()
    f = figures(reports)
    assert f["voice_to_voice"] == (800.0, None)
    assert isinstance(f["turn"][1], TurnFailed) and f["turn"][1].code == "split_turn"


def test_barge_in_reaction_truncate_and_the_interruption_is_the_next_question():
    pacing = Pacing(barge_in_share=1.0, listen_before_barge_s=(0.5, 0.5), think_s=(1.0, 1.0))
    first = LAST + 0.6
    t_cut = first + 0.5                       # the person starts speaking again
    cleared = t_cut + ONSET + 0.18            # 180 ms after the interruption's first voiced sample
    script = [transcript(LAST + 0.3)] + answer(first, audio_s=4.0, deltas=20, done_at=cleared + 0.05,
                                               status="cancelled")
    script.append((cleared, {"type": "output_audio_buffer.cleared", "response_id": "r1"}))
    last2 = t_cut + 14399 / RATE
    script += [transcript(last2 + 0.25)] + answer(last2 + 0.7, audio_s=1.0, rid="r2")
    sp, sess, clock, mic, reports = speaker(script, pacing)
    sp.turn()
    f = figures(reports)
    assert mic.played[1] == pytest.approx(t_cut)
    assert f["barge_in_reaction"] == (180.0, None)
    assert f["turn"][1] is None
    # what was heard when playback was cut: from the first delta to the clear
    assert sess.sent[0][1]["audio_end_ms"] == int(round((cleared - first) * 1000, 6))
    assert clock.t == pytest.approx(cleared)   # no pause to think: they are already speaking
    reports.clear()
    sp.pacing = Pacing(barge_in_share=0.0, think_s=(1.0, 1.0))
    sp.turn()                                 # the answer to the interruption
    f = figures(reports)
    assert f["voice_to_voice"] == (700.0, None)
    assert f["final_transcript"] == (250.0, None)
    assert f["turn"][1] is None               # the cut reply is not a split question


def test_no_barge_in_when_the_answer_is_already_over():
    pacing = Pacing(barge_in_share=1.0, listen_before_barge_s=(1.0, 1.0), think_s=(1.0, 1.0))
    script = [transcript(LAST + 0.3)] + answer(LAST + 0.6, audio_s=1.2, deltas=2)
    sp, sess, _, mic, reports = speaker(script, pacing)
    sp.turn()
    assert len(mic.played) == 1 and "barge_in_reaction" not in figures(reports)
    assert sess.sent[0][1]["audio_end_ms"] == 1200


def _cut_in_on_a_short_reply(speech_started_at: float):
    """The person cuts in 0.5 s into a 2 s reply whose response.done came
    early; the reply's playout ends (stopped) at ``first + 2.0``."""
    pacing = Pacing(barge_in_share=1.0, listen_before_barge_s=(0.5, 0.5), think_s=(1.0, 1.0),
                    turn_timeout_s=5.0)
    first = LAST + 0.6
    script = [transcript(LAST + 0.3)] + answer(first, audio_s=2.0, deltas=2, done_at=first + 0.2)
    script.append((first + 2.0, {"type": "output_audio_buffer.stopped", "response_id": "r1"}))
    script.append((speech_started_at, {"type": "input_audio_buffer.speech_started", "item_id": "u2"}))
    return speaker(script, pacing), first


def test_a_reply_over_before_the_server_heard_the_cut_is_a_completed_turn_not_a_barge_in():
    # Real case (capacity run, 2026-12-02): the reply's playout ended 0.3 s
    # before the interruption's speech was detected; there was nothing to clear.
    (sp, sess, clock, mic, reports), first = _cut_in_on_a_short_reply(speech_started_at=LAST + 0.6 + 2.3)
    sp.turn()
    f = figures(reports)
    assert "barge_in_reaction" not in f
    assert f["turn"][1] is None and f["voice_to_voice"][1] is None
    assert sess.sent[-1][1]["audio_end_ms"] == 2000              # all of it was heard
    assert len(mic.played) == 2 and sp.pending is not None       # the interruption is the next question


def test_a_cut_heard_while_the_reply_played_and_never_cleared_fails_the_barge_in():
    (sp, sess, clock, mic, reports), first = _cut_in_on_a_short_reply(speech_started_at=LAST + 0.6 + 1.5)
    sp.turn()
    f = figures(reports)
    assert isinstance(f["barge_in_reaction"][1], TurnFailed) and f["barge_in_reaction"][1].code == "timeout"
    assert isinstance(f["turn"][1], TurnFailed)


def test_no_answer_is_a_failed_turn_named_timeout():
    pacing = Pacing(barge_in_share=0.0, turn_timeout_s=5.0, think_s=(1.0, 1.0))
    sp, _, clock, _, reports = speaker([transcript(LAST + 0.3)], pacing)
    sp.turn()
    name, ms, exc = reports[-1]
    assert name == "turn" and exc.code == "timeout"
    assert ms == pytest.approx(5000.0)
    assert clock.t == pytest.approx(LAST + 5.0 + 1.0)
    # The failure tells what the server did say: here a transcript and no answer.
    assert exc.__notes__ == ["session events since the question (0 audio deltas): "
                             "conversation.item.input_audio_transcription.completed@+0.30s"]


@pytest.mark.parametrize("extra, code", [
    ([(LAST + 0.4, {"type": "error", "error": {"code": "server_busy", "message": "full"}})], "server_busy"),
    ([], "backend_unavailable"),
])
def test_failed_turn_carries_the_server_code(extra, code):
    script = [transcript(LAST + 0.3)] + answer(LAST + 0.6, audio_s=0.5, deltas=1, status=(
        "completed" if extra else "failed")) + extra
    if not extra:
        script[-1][1]["response"]["status_details"] = {"type": "failed", "error": {"code": code}}
    sp, _, _, _, reports = speaker(script)
    sp.turn()
    name, _, exc = reports[-1]
    assert name == "turn" and exc.code == code and str(exc).startswith(code)


def test_refused_connect_is_named_by_the_servers_code():
    log = EventLog()
    log.add({"type": "error", "error": {"code": "server_busy", "message": "retry in 10 s",
                                        "retry_after_s": 10.0}}, 1.0)
    refused = connect_failure(log, ConnectionError("closed"))
    assert (refused.code, refused.retry_after_s) == ("server_busy", 10.0)
    assert connect_failure(EventLog(), TimeoutError("x")).code == "timeout"
    assert connect_failure(EventLog(), OSError("refused")).code == "connect_failed"


def test_turn_detection_from_the_environment():
    from loadtests.conversation import turn_detection

    assert turn_detection({}) is True                          # server_vad with the server's defaults
    assert turn_detection({"LOAD_TURN_DETECTION": "semantic_vad"}) == {"type": "semantic_vad", "eagerness": "auto"}
    assert turn_detection({"LOAD_TURN_DETECTION": "semantic_vad:high"})["eagerness"] == "high"
    with pytest.raises(ValueError, match="LOAD_TURN_DETECTION 'vad'"):
        turn_detection({"LOAD_TURN_DETECTION": "vad"})


DOC = Clip("doc", b"\x02\x00" * RATE, RATE, VoicedSpan(1600, 14399, RATE), "How do I start the assistant?")


def test_document_questions_are_drawn_by_their_share_and_reported_apart():
    timings = json.dumps({"llm_first_token_ms": 420.0, "voice_to_voice_ms": 800.0})
    script = [transcript(LAST + 0.30)] + answer(LAST + 0.85, audio_s=1.0)
    script[-1][1]["response"]["metadata"] = {"timings": timings}
    clock = VirtualClock()
    reports: list = []
    sp = Speaker(ScriptedSession(clock, script), FakeMic(clock), [CLIP], clock,
                 lambda n, ms, e: reports.append((n, ms, e)),
                 Pacing(barge_in_share=0.0, think_s=(1.0, 1.0), doc_share=1.0), random.Random(1), doc_clips=[DOC])
    sp.turn()
    f = figures(reports)
    assert sp.doc_turn
    assert f["voice_to_voice"] == f["doc/voice_to_voice"] == (850.0, None)
    assert f["doc/llm_first_token"] == (420.0, None) and f["server/llm_first_token"] == (420.0, None)
    # the same turn without document questions in the mix reports none
    script = [transcript(LAST + 0.30)] + answer(LAST + 0.85, audio_s=1.0)
    script[-1][1]["response"]["metadata"] = {"timings": timings}
    sp, _, _, _, reports = speaker(script)
    sp.turn()
    assert not sp.doc_turn and not any(n.startswith("doc/") for n, _, _ in reports)


@pytest.mark.parametrize("share, expect", [(0.0, 0), (0.3, 300), (1.0, 1000)])
def test_the_share_of_document_questions_is_the_pacings(share, expect):
    sp = Speaker(None, None, [CLIP], VirtualClock(), lambda *a: None,  # type: ignore[arg-type]
                 Pacing(doc_share=share), random.Random(7), doc_clips=[DOC])
    picked = [sp.pick() for _ in range(1000)]
    docs = sum(is_doc for _, is_doc in picked)
    assert abs(docs - expect) <= 45
    assert all((clip is DOC) == is_doc for clip, is_doc in picked)
    # without document clips the share draws nothing from them
    sp.doc_clips = []
    assert not any(is_doc for _, is_doc in (sp.pick() for _ in range(100)))


@pytest.mark.parametrize("first_is_doc", [False, True])
def test_an_interruption_is_reported_by_its_own_kind_when_answered(first_is_doc):
    """The interruption is the next question: its kind (about the documents
    or not) is its own, not that of the answer it cut."""
    pacing = Pacing(barge_in_share=1.0, listen_before_barge_s=(0.5, 0.5), think_s=(1.0, 1.0))
    first = LAST + 0.6
    t_cut = first + 0.5
    cleared = t_cut + ONSET + 0.18
    script = [transcript(LAST + 0.3)] + answer(first, audio_s=4.0, deltas=20, done_at=cleared + 0.05,
                                               status="cancelled")
    script.append((cleared, {"type": "output_audio_buffer.cleared", "response_id": "r1"}))
    last2 = t_cut + 14399 / RATE
    script += [transcript(last2 + 0.25)] + answer(last2 + 0.9, audio_s=1.0, rid="r2")
    clock = VirtualClock()
    reports: list = []
    sp = Speaker(ScriptedSession(clock, script), FakeMic(clock), [CLIP], clock,
                 lambda n, ms, e: reports.append((n, ms, e)), pacing, random.Random(1), doc_clips=[DOC])
    picks = iter([(DOC, True), (CLIP, False)] if first_is_doc else [(CLIP, False), (DOC, True)])
    sp.pick = lambda: next(picks)                 # type: ignore[method-assign]
    sp.turn()
    f = figures(reports)
    assert ("doc/voice_to_voice" in f) == first_is_doc and "barge_in_reaction" in f
    assert sp.pending is not None and sp.pending[3] is (not first_is_doc)
    reports.clear()
    sp.pacing = Pacing(barge_in_share=0.0, think_s=(1.0, 1.0))
    sp.turn()
    f = figures(reports)
    assert f["voice_to_voice"] == (900.0, None)
    assert ("doc/voice_to_voice" in f) == (not first_is_doc)
