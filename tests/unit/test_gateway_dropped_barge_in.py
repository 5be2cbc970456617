"""Speech over a reply pauses it until the barge-in is confirmed (the reply
is cancelled) or given up (it resumes). Invariant: a paused reply is never
left without a turn to settle it. A turn dropped while its barge-in is
pending (turn detection turned off, or the input buffer cleared, during a
cough over the reply) gives it up: the reply resumes at once. A new turn
that starts before the false-interruption timer fired takes the pause over,
or, with interrupt_response turned off meanwhile, resumes the reply. A cough
the client commits (ending its turn before its speech stops) gives it up
after false_interruption_timeout_ms, as a speech stop would. Either
way it ends and the next response.create is accepted. Before, the reply
stayed paused and in progress for ever, and every response.create was
refused (conversation_already_has_active_response). Found by the protocol
state machine (tests/fuzz/test_protocol_statemachine.py) switching turn
detection while audio flowed. On a virtual clock."""
from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from tests.unit.test_gateway_turns import QUESTION, close, session


def false_interruptions() -> float:
    return REGISTRY.get_sample_value("voice_gateway_false_interruptions_total",
                                     {"service": "unknown", "model": "unknown", "variant": "stable"}) or 0.0

DROPS = {
    "turn detection off": {"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}},
    "input cleared": {"type": "input_audio_buffer.clear"},
}


@pytest.mark.parametrize("drop", list(DROPS))
async def test_a_turn_dropped_during_its_barge_in_resumes_the_reply(drop):
    # The question 0.5-2.5 s; its reply plays from ~3 s; a cough from 5.0 s pauses it.
    async with session([(0.5, 2.5), (5.0, 6.0)], [QUESTION, ""]) as s:
        await s.run_audio(5.3)
        rid = s.first("response.created").event["response"]["id"]
        cleared = s.first("output_audio_buffer.cleared")
        assert cleared.event["response_id"] == rid
        assert len(s.of("output_audio_buffer.started")) == 1
        counted = false_interruptions()
        await s.send(DROPS[drop])
        dropped_at = s.clock.now()
        # The client dropped the turn: not a false interruption (speech that confirmed nothing).
        assert false_interruptions() == counted
        restarted = s.of("output_audio_buffer.started")
        assert len(restarted) == 2 and close(restarted[1].at, dropped_at), "the reply did not resume"
        await s.run_audio(15.0)
        done = s.first("response.done").event["response"]
        assert done["id"] == rid and done["status"] == "completed"
        assert not s.of("conversation.item.truncated")
        await s.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        await s.wait(1.0)
        assert not s.of("error"), [e.event for e in s.of("error")]
        assert len(s.of("response.done")) == 2


async def test_a_reply_paused_by_a_cough_resumes_when_interruptions_are_turned_off_before_the_next_turn():
    # A cough at 5.0-5.25 s pauses the reply; interrupt_response goes off while it
    # lasts; the next speech (6.0 s, a new turn: the 500 ms window ended at 5.75 s)
    # starts before the 800 ms false-interruption timer (from ~5.41 s) fired.
    async with session([(0.5, 2.5), (5.0, 5.25), (6.0, 6.6)], [QUESTION, "", "hello"]) as s:
        await s.run_audio(5.2)
        rid = s.first("response.created").event["response"]["id"]
        assert s.first("output_audio_buffer.cleared").event["response_id"] == rid
        await s.send({"type": "session.update", "session": {"audio": {"input": {
            "turn_detection": {"type": "server_vad", "interrupt_response": False}}}}})
        await s.run_audio(20.0)
        started = s.of("input_audio_buffer.speech_started")
        assert len(started) == 3
        restarted = s.of("output_audio_buffer.started")
        assert len(restarted) == 2 and close(restarted[1].at, started[2].at), "the reply did not resume"
        done = s.first("response.done").event["response"]
        assert done["id"] == rid and done["status"] == "completed"
        await s.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        await s.wait(1.0)
        assert not s.of("error"), [e.event for e in s.of("error")]
        assert len(s.of("response.done")) == 2


async def test_a_cough_committed_by_the_client_during_its_barge_in_resumes_the_reply():
    # A cough from 5.0 s pauses the reply; the client commits the input buffer
    # while it lasts (allowed with server_vad): the turn ends there, unconfirmed
    # (no words), and its speech's stop comes after the commit closed the
    # segment. The reply resumes after false_interruption_timeout_ms as if the
    # speech had stopped at the commit.
    async with session([(0.5, 2.5), (5.0, 6.0)], [QUESTION, ""]) as s:
        await s.run_audio(5.3)
        rid = s.first("response.created").event["response"]["id"]
        assert s.first("output_audio_buffer.cleared").event["response_id"] == rid
        counted = false_interruptions()
        await s.send({"type": "input_audio_buffer.commit"})
        await s.run_audio(15.0)
        assert len(s.of("output_audio_buffer.started")) == 2, "the reply did not resume"
        assert false_interruptions() == counted + 1
        done = s.first("response.done").event["response"]
        assert done["id"] == rid and done["status"] == "completed"
        await s.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        await s.wait(1.0)
        assert not s.of("error"), [e.event for e in s.of("error")]
        assert len(s.of("response.done")) == 2


async def test_a_commit_after_the_cough_stopped_leaves_one_timer():
    # A cough at 5.0-5.2 s (its stop starts the false-interruption timer), a
    # commit at 5.45 s, a second cough from 5.7 s: the second cough's turn
    # takes the pause over, and the reply resumes after its own timer, not at
    # the first one's (a second timer started by the commit could not be
    # cancelled and resumed the reply under the second cough).
    async with session([(0.5, 2.5), (5.0, 5.2), (5.7, 5.95)], [QUESTION, "", ""]) as s:
        await s.run_audio(5.45)
        rid = s.first("response.created").event["response"]["id"]
        assert s.first("output_audio_buffer.cleared").event["response_id"] == rid
        await s.send({"type": "input_audio_buffer.commit"})
        await s.run_audio(15.0)
        restarted = s.of("output_audio_buffer.started")
        assert len(restarted) == 2, "the reply did not resume"
        # The first cough's timer would fire at ~6.2 s; the second cough (to 5.95 s) has its own.
        assert restarted[1].at > 6.6, restarted[1].at
        done = s.first("response.done").event["response"]
        assert done["id"] == rid and done["status"] == "completed"


async def test_a_vad_restart_during_a_cough_over_the_reply_resumes_it():
    # A cough at 5.0-5.2 s pauses the reply; a threshold change at 5.25 s,
    # before the VAD reported the cough's stop, restarts the VAD stream, which
    # never will: the segment ends at the restart and the reply resumes after
    # the false-interruption timer.
    async with session([(0.5, 2.5), (5.0, 5.2)], [QUESTION, "", ""]) as s:
        await s.run_audio(5.25)
        rid = s.first("response.created").event["response"]["id"]
        assert s.first("output_audio_buffer.cleared").event["response_id"] == rid
        await s.send({"type": "session.update", "session": {"audio": {"input": {
            "turn_detection": {"type": "server_vad", "threshold": 0.6}}}}})
        await s.run_audio(20.0)
        assert len(s.of("output_audio_buffer.started")) >= 2, "the reply did not resume"
        done = s.first("response.done").event["response"]
        assert done["id"] == rid and done["status"] == "completed"
        await s.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        await s.wait(1.0)
        assert not s.of("error"), [e.event for e in s.of("error")]
