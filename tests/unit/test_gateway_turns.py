"""Turn-taking, barge-in and false interruptions on a virtual clock.

Invariants: a user turn ends exactly silence_duration_ms after the last voiced
sample, and a shorter pause inside it does not split it (one turn, one
answer); speech over a reply clears the client's audio at once; a real word
cancels the reply (turn_detected), cancels the backend calls and leaves only
the heard text in the history; a cough or a backchannel pauses the reply and
then resumes it; manual turns, response.cancel and truncate clamping behave
as the Realtime API says. Times are virtual and exact (to one 20 ms step)."""
from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from services.gateway.fakes import FakeBackends
from services.gateway.scripted import STEP_S, ScriptedSession
from services.gateway.settings import GatewaySettings
from common.clock import VirtualClock

QUESTION = "what is the weather like today"
# ~10 s of fake speech (60 ms per character).
REPLY = ("The weather today is sunny and warm with a light breeze from the west. "
         "Later this afternoon some clouds will roll in, but no rain is expected, "
         "so it is a fine day for a walk.")
SETTINGS = dict(redis_url="", silence_duration_ms=500, vad_min_silence_ms=160, vad_min_speech_ms=120,
                prefix_padding_ms=300, min_interrupt_ms=300, false_interruption_timeout_ms=800)


def session(speech, texts, replies=(REPLY, "Okay."), tts_rtf=0.5, **settings) -> ScriptedSession:
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=speech, texts=texts, replies=replies)
    b.tts.rtf = tts_rtf          # synthesis still running at 5 s, so a barge-in must cancel it
    b.llm.token_s = 0.02
    return ScriptedSession(b, clock, GatewaySettings(**(SETTINGS | settings)))


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, {"service": "unknown", "model": "unknown",
                                            "variant": "stable"} | labels) or 0.0


def close(a: float, b: float, tol: float = STEP_S + 1e-6) -> bool:
    return abs(a - b) <= tol


def audio_of(s: ScriptedSession, response_id: str):
    return [e for e in s.of("response.output_audio.delta") if e.event["response_id"] == response_id]


async def test_user_speaks_then_says_stop_during_a_ten_second_reply():
    barge_ins = metric("voice_gateway_barge_ins_total")
    async with session([(0.5, 2.5), (5.0, 5.4)], [QUESTION, "stop"]) as s:
        await s.run_audio(8.0)

        started = s.of("input_audio_buffer.speech_started")
        assert len(started) == 2
        assert close(started[0].at, 0.62) and started[0].event["audio_start_ms"] == 200
        stopped = s.of("input_audio_buffer.speech_stopped")
        assert close(stopped[0].at, 3.0) and stopped[0].event["audio_end_ms"] == 2500
        assert s.first("input_audio_buffer.committed").at == stopped[0].at
        done_tr = s.first("conversation.item.input_audio_transcription.completed")
        assert done_tr.event["transcript"] == QUESTION

        first = s.of("response.created")[0]
        assert close(first.at, 3.0)
        rid = first.event["response"]["id"]
        audio = audio_of(s, rid)
        first_audio = audio[0].at
        assert 3.0 < first_audio < 3.6

        # "stop" at 5.0 s: decided at 5.12 s, the client's audio is cleared at once.
        assert close(started[1].at, 5.12)
        cleared = s.first("output_audio_buffer.cleared")
        assert cleared.at == started[1].at and cleared.event["response_id"] == rid
        assert all(e.at <= cleared.at for e in audio), "audio sent after the barge-in"
        # Confirmed when 300 ms of speech hold a real word: cancelled, turn_detected.
        done = [e for e in s.of("response.done") if e.event["response"]["id"] == rid][0]
        assert close(done.at, 5.30)
        assert done.event["response"]["status"] == "cancelled"
        assert done.event["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
        assert s.b.tts.cancelled >= 1
        assert metric("voice_gateway_barge_ins_total") == barge_ins + 1

        # Truncated to what was played when the user started speaking.
        trunc = s.first("conversation.item.truncated")
        heard_ms = (cleared.at - first_audio) * 1000
        assert abs(trunc.event["audio_end_ms"] - heard_ms) <= 25
        # The user's "stop" is its own turn and gets an answer.
        assert close(stopped[1].at, 5.9) and stopped[1].event["audio_end_ms"] == 5400
        assert s.of("conversation.item.input_audio_transcription.completed")[1].event["transcript"] == "stop"
        assert len(s.of("response.created")) == 2
        # The history holds only the heard words of the interrupted answer.
        assistant = [m for m in s.b.llm.requests[1] if m.role == "assistant"]
        assert len(assistant) == 1
        heard = assistant[0].content
        assert heard and REPLY.startswith(heard) and len(heard) < len(REPLY) / 2
        item = s.conv.state.find(done.event["response"]["output"][0]["id"])
        assert item.truncated_ms == trunc.event["audio_end_ms"] and item.text() == heard


async def test_cough_pauses_the_reply_then_it_resumes():
    false_before = metric("voice_gateway_false_interruptions_total")
    async with session([(0.5, 2.5), (5.0, 5.25)], [QUESTION, ""]) as s:
        await s.run_audio(16.0)
        rid = s.first("response.created").event["response"]["id"]
        cleared = s.first("output_audio_buffer.cleared")
        assert close(cleared.at, 5.12)
        # Speech ended 5.25 s, reported 5.41 s; the reply resumes 0.8 s later.
        restarted = s.of("output_audio_buffer.started")
        assert len(restarted) == 2 and close(restarted[1].at, 5.41 + 0.8)
        audio = audio_of(s, rid)
        assert not [e for e in audio if cleared.at < e.at < restarted[1].at]
        assert [e for e in audio if e.at >= restarted[1].at]
        done = s.first("response.done")
        assert done.event["response"]["status"] == "completed"
        assert not s.of("conversation.item.truncated")
        assert len(s.of("input_audio_buffer.committed")) == 1, "the cough became a user turn"
        assert len(s.b.llm.requests) == 1
        assert metric("voice_gateway_false_interruptions_total") == false_before + 1
        assert s.first("output_audio_buffer.stopped").at > done.at


async def test_backchannel_longer_than_min_interrupt_does_not_cancel(caplog):
    caplog.set_level("INFO")      # every logger: no transcript words at INFO anywhere
    async with session([(0.5, 2.5), (5.0, 5.6)], [QUESTION, "mm-hm"]) as s:
        await s.run_audio(16.0)
        # The log says why the speech over the reply was dropped, at INFO
        # without the words (no transcript at INFO: issue #16).
        assert "speech over the reply dropped (no real word, 1 words)" in caplog.text
        assert "mm-hm" not in caplog.text and QUESTION not in caplog.text
        assert s.first("output_audio_buffer.cleared")
        assert s.first("response.done").event["response"]["status"] == "completed"
        assert len(s.of("output_audio_buffer.started")) == 2
        deltas = s.of("conversation.item.input_audio_transcription.delta")
        assert all("mm" not in e.event["transcript"] for e in deltas)


async def test_pause_inside_a_sentence_gives_one_turn_and_one_answer():
    async with session([(0.5, 1.5), (1.8, 2.6)], ["eight of spades", "four of clubs"]) as s:
        await s.run_audio(4.0)
        assert len(s.of("input_audio_buffer.speech_started")) == 1
        stopped = s.of("input_audio_buffer.speech_stopped")
        assert len(stopped) == 1 and stopped[0].event["audio_end_ms"] == 2600 and close(stopped[0].at, 3.1)
        assert [e.event["transcript"] for e in s.of("conversation.item.input_audio_transcription.completed")] \
            == ["eight of spades four of clubs"]
        assert len(s.of("response.created")) == 1
        assert s.of("conversation.item.input_audio_transcription.delta")[-1].event["transcript"] \
            == "eight of spades four of clubs"


async def test_pause_longer_than_the_window_gives_two_turns():
    async with session([(0.5, 1.5), (2.3, 3.0)], ["eight of spades", "four of clubs"]) as s:
        await s.run_audio(4.5)
        assert len(s.of("input_audio_buffer.committed")) == 2
        assert close(s.of("input_audio_buffer.speech_stopped")[0].at, 2.0)


async def test_final_transcription_starts_when_silence_begins():
    # Without preemption the answer starts at the end of the turn, so voice-to-voice
    # exceeds the window (test_gateway_preempt.py covers the preemptive path).
    async with session([(0.5, 2.5)], [QUESTION], replies=("Fine.",), preemptive_generation=False) as s:
        await s.run_audio(4.0)
        done = s.first("response.done")
        timings = __import__("json").loads(done.event["response"]["metadata"]["timings"])
        # force_eou went out at 2.66 s (VAD stop), the final came 0.1 s later,
        # long before the window closed at 3.0 s: no wait for ASR.
        assert timings["asr_wait_ms"] == 0.0
        assert abs(timings["endpoint_ms"] - 500) <= 1
        assert abs(timings["speech_end_ms"] - 160) <= 1
        assert timings["voice_to_voice_ms"] > timings["endpoint_ms"]


async def test_a_final_that_never_comes_counts_its_wait_in_the_asr_stage():
    # The ASR's final is 8 s late, past final_timeout_s (5 s): the turn goes on
    # with the interims, and asr_final shows the wait instead of nothing (a
    # very slow ASR must not vanish from the stage breakdown).
    # A long reply: still speaking when the late final comes (~10.5 s), which
    # then changes nothing (the response's times are those it was given).
    async with session([(0.5, 2.5)], [QUESTION], replies=(REPLY,), preemptive_generation=False) as s:
        s.b.asr.final_latency_s = 8.0
        await s.run_audio(25.0)
        done = s.first("response.done")
        timings = __import__("json").loads(done.event["response"]["metadata"]["timings"])
        # Given up on at the window's close (3.0 s) + 5.0 s; force_eou went out before 3.0 s.
        assert abs(timings["asr_wait_ms"] - 5000) <= 25, timings
        assert 5000 < timings["asr_final_ms"] < 5500, timings


async def test_manual_turns_commit_then_response_create():
    async with session([], ["hello there assistant"], replies=("Hi.",)) as s:
        await s.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
        assert s.first("session.updated").event["session"]["audio"]["input"]["turn_detection"] is None
        await s.send({"type": "input_audio_buffer.commit", "event_id": "c0"})
        err = s.first("error").event["error"]
        assert err["code"] == "input_audio_buffer_commit_empty" and err["event_id"] == "c0"
        await s.run_audio(1.0)
        await s.send({"type": "input_audio_buffer.commit"})
        await s.wait(0.3)
        assert s.first("conversation.item.input_audio_transcription.completed").event["transcript"] \
            == "hello there assistant"
        assert not s.of("response.created") and not s.of("input_audio_buffer.speech_started")
        await s.send({"type": "response.create"})
        await s.wait(2.0)
        assert s.first("response.done").event["response"]["status"] == "completed"


async def test_response_cancel_from_the_client():
    async with session([], [], replies=(REPLY,)) as s:
        await s.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]}})
        await s.send({"type": "response.create"})
        await s.wait(1.0)
        await s.send({"type": "response.cancel", "event_id": "x1"})
        await s.wait(0.2)
        done = s.first("response.done").event["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"]["reason"] == "client_cancelled"
        assert s.b.tts.cancelled == 1
        await s.send({"type": "response.cancel", "event_id": "x2"})
        assert s.of("error")[-1].event["error"]["code"] == "response_cancel_not_active"


async def test_truncate_is_clamped_to_the_audio_sent():
    async with session([], [], replies=("One two three. Four five six.",), tts_rtf=0.05) as s:
        await s.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "count"}]}})
        await s.send({"type": "response.create"})
        await s.wait(4.0)
        done = s.first("response.done").event["response"]
        iid = done["output"][0]["id"]
        item = s.conv.state.find(iid)
        await s.send({"type": "conversation.item.truncate", "item_id": iid, "content_index": 0,
                      "audio_end_ms": 10_000_000})
        assert not s.of("error")
        assert s.first("conversation.item.truncated").event["audio_end_ms"] == int(item.audio_ms)
        await s.send({"type": "conversation.item.truncate", "item_id": iid, "content_index": 0,
                      "audio_end_ms": 900})
        assert item.text() == "One two three."
        await s.send({"type": "conversation.item.truncate", "item_id": "item_nope", "audio_end_ms": 5,
                      "event_id": "t9"})
        err = s.of("error")[-1].event["error"]
        assert err["code"] == "item_not_found" and err["event_id"] == "t9" and "item_nope" in err["message"]


async def test_speech_while_the_answer_is_still_thinking_cancels_it():
    async with session([(0.5, 1.5), (2.1, 2.8)], ["tell me a story", "no wait"]) as s:
        s.b.llm.first_token_s = 0.5          # still thinking when the user speaks again
        await s.run_audio(5.0)
        first = s.of("response.done")[0].event["response"]
        assert first["status"] == "cancelled" and first["status_details"]["reason"] == "turn_detected"
        assert not s.of("output_audio_buffer.cleared"), "nothing was playing, nothing to clear"
        assert s.b.llm.cancelled == 1
        assert s.of("conversation.item.input_audio_transcription.completed")[1].event["transcript"] == "no wait"


async def test_backend_down_then_back():
    async with session([(0.5, 1.5), (4.0, 5.0)], ["first question", "second question"],
                       replies=("Fine.", "Good.")) as s:
        s.b.tts.kill()
        await s.run_audio(3.0)
        err = [e.event["error"] for e in s.of("error")]
        assert err and err[0]["code"] == "backend_unavailable" and err[0]["message"].startswith("tts at fake-tts")
        assert s.first("response.done").event["response"]["status"] == "failed"
        s.b.tts.up = True
        await s.run_audio(3.0)
        assert s.of("response.done")[1].event["response"]["status"] == "completed"


async def test_an_asr_stream_reset_while_the_user_speaks_hears_the_utterance_again():
    """A connection reset mid-utterance (a GOAWAY, a service restarted between
    health checks): one error names the ASR, and the new stream hears the
    utterance from its first sample (the ring holds 6 s), not only what was
    said after the reconnect; the turn is transcribed and answered once."""
    async with session([(0.5, 2.5)], ["what time is it now"], replies=("Noon.",)) as s:
        await s.run_audio(1.5)                      # a second into the utterance
        s.b.asr.reset_streams()
        await s.run_audio(3.5)
        errors = [e.event["error"]["message"] for e in s.of("error")]
        assert len(errors) == 1 and errors[0].startswith("asr at fake-asr"), errors
        assert s.b.asr.final_audio_ms and s.b.asr.final_audio_ms[-1] >= 2000, s.b.asr.final_audio_ms
        [done] = s.of("conversation.item.input_audio_transcription.completed")
        assert done.event["transcript"] == "what time is it now"
        assert [d.event["response"]["status"] for d in s.of("response.done")] == ["completed"]


async def test_speech_begun_while_the_asr_was_away_is_heard_once_it_is_back():
    """The ASR is down when the user starts speaking and back (its stream
    reopened) before they stop: the utterance is heard from its start."""
    async with session([(0.5, 3.0)], ["what time is it now"], replies=("Noon.",)) as s:
        s.b.asr.kill()
        await s.run_audio(1.0)                      # speaking, no ASR
        s.b.asr.up = True
        await s.run_audio(4.0)                      # the stream reopens (backoff), the user goes on
        assert s.b.asr.final_audio_ms and s.b.asr.final_audio_ms[-1] >= 2500, s.b.asr.final_audio_ms
        [done] = s.of("conversation.item.input_audio_transcription.completed")
        assert done.event["transcript"] == "what time is it now"


async def test_vad_restart_recovers_turn_taking():
    async with session([(3.0, 4.0)], ["hello"], replies=("Hi.",)) as s:
        s.b.vad.kill()
        await s.run_audio(1.0)
        assert s.first("error").event["error"]["message"].startswith("vad at fake-vad is unavailable")
        s.b.vad.up = True
        await s.run_audio(4.0)
        assert len(s.of("error")) == 1, "one error per outage"
        assert s.first("input_audio_buffer.speech_started")
        assert s.first("response.done").event["response"]["status"] == "completed"


async def test_client_truncate_of_the_reply_in_flight_is_accepted():
    """A browser truncates the playing reply as soon as it sees `cleared`, before
    the response has ended: that truncate must be honoured, not rejected."""
    async with session([(0.5, 2.5), (5.0, 5.4)], [QUESTION, "stop"]) as s:
        await s.run_audio(5.2)
        cleared = s.first("output_audio_buffer.cleared")
        rid = cleared.event["response_id"]
        iid = s.first("response.output_item.added").event["item"]["id"]
        first_audio = audio_of(s, rid)[0].at
        played = int((cleared.at - first_audio) * 1000) - 40   # the client played a little less
        await s.send({"type": "conversation.item.truncate", "item_id": iid, "content_index": 0,
                      "audio_end_ms": played, "event_id": "tr1"})
        await s.run_audio(2.0)
        assert not s.of("error"), [e.event for e in s.of("error")]
        truncs = [e.event for e in s.of("conversation.item.truncated") if e.event["item_id"] == iid]
        assert truncs and truncs[0]["audio_end_ms"] == played
        item = s.conv.state.find(iid)
        assert item.truncated_ms is not None and REPLY.startswith(item.text())


async def test_false_interruption_after_client_truncate_resumes_whole_item():
    """After a cough the reply resumes from what the client really played, and the
    item is no longer truncated: the rest of the answer is heard after all."""
    async with session([(0.5, 2.5), (5.0, 5.25)], [QUESTION, ""]) as s:
        await s.run_audio(5.2)
        cleared = s.first("output_audio_buffer.cleared")
        iid = s.first("response.output_item.added").event["item"]["id"]
        first_audio = audio_of(s, cleared.event["response_id"])[0].at
        played = int((cleared.at - first_audio) * 1000) - 40
        await s.send({"type": "conversation.item.truncate", "item_id": iid, "content_index": 0,
                      "audio_end_ms": played})
        await s.run_audio(14.0)
        assert not s.of("error")
        assert s.first("response.done").event["response"]["status"] == "completed"
        item = s.conv.state.find(iid)
        assert item.truncated_ms is None and item.text() == REPLY


async def test_client_truncate_before_cancel_completes_is_kept():
    """response.cancel then an immediate truncate (what the openai client does):
    the client's played position wins over the gateway's wall-clock estimate."""
    async with session([(0.5, 2.5)], [QUESTION]) as s:
        await s.run_audio(4.5)
        rid = s.first("response.created").event["response"]["id"]
        iid = s.first("response.output_item.added").event["item"]["id"]
        assert audio_of(s, rid), "the reply should be playing"
        await s.conv.handle({"type": "response.cancel"})
        await s.conv.handle({"type": "conversation.item.truncate", "item_id": iid,
                             "content_index": 0, "audio_end_ms": 200})
        await s.wait(1.0)
        assert s.first("response.done").event["response"]["status"] == "cancelled"
        truncs = [e.event["audio_end_ms"] for e in s.of("conversation.item.truncated")]
        assert truncs and truncs[-1] == 200, truncs
        assert s.conv.state.find(iid).truncated_ms == 200


async def test_barge_in_is_confirmed_by_an_urgent_flush_when_interims_lag():
    """On a busy host interims are background work and come late; the barge-in
    asks for a flush (final priority) once the speech has lasted
    min_interrupt_ms and one interim interval without an interim, so the reply
    is cancelled a pass later, not a (late) interim later (here interims lag 3 s: without the flush the 10 s reply would play
    on unheard-over for 3 s and the cancel would come after its synthesis)."""
    confirms = metric("voice_gateway_barge_in_confirm_seconds_count")
    async with session([(0.5, 2.5), (5.0, 6.0)], [QUESTION, "stop right now"]) as s:
        s.b.asr.interim_lag_s = 3.0
        await s.run_audio(9.0)
        rid = s.first("response.created").event["response"]["id"]
        started = s.of("input_audio_buffer.speech_started")[1]
        done = [e for e in s.of("response.done") if e.event["response"]["id"] == rid][0]
        assert done.event["response"]["status_details"]["reason"] == "turn_detected"
        # 300 ms of speech after the onset, one interim interval (0.4 s) for an
        # interim that does not come, then one 0.1 s flush pass.
        assert close(done.at, 5.0 + 0.3 + 0.4 + 0.1)
        assert done.at < started.at + 1.0
        assert s.b.asr.flushes >= 1
        assert s.b.tts.cancelled >= 1
        assert metric("voice_gateway_barge_in_confirm_seconds_count") == confirms + 1


async def test_a_cough_under_lagging_interims_flushes_a_bounded_number_of_times_and_resumes():
    async with session([(0.5, 2.5), (5.0, 6.0)], [QUESTION, ""]) as s:
        s.b.asr.interim_lag_s = 3.0
        await s.run_audio(16.0)
        assert not [e for e in s.of("response.done") if e.event["response"]["status"] == "cancelled"]
        assert len(s.of("output_audio_buffer.started")) == 2   # the reply resumed
        # The question's pause flush; for 1 s of coughing one flush per 0.4 s from
        # 700 ms in (5.7, 6.1 s: the speech is known to have ended only at the
        # stop) and its own pause flush.
        assert s.b.asr.flushes == 1 + 2 + 1
