"""A user on loudspeakers (issue #13): the assistant's own voice comes back
into the microphone (clients/echo.py: 250 ms late, only 6 dB down, with a
room's reverberation and noise, the worst case the issue names).

Invariants, on the real services with real speech at real time: a long
answer plays to its end with its echo in the microphone (completed, never
cancelled, no user turn made of it); a real voice spoken over the answer and
its echo still interrupts it (turn_detected), promptly. And with no echo at
all, a voice half a second into a new session's first answer, before the
echo detector has decided, interrupts it and is heard whole (one turn, its
words right): AEC3 used to take 40-70 dB off such a voice's first second
(services/gateway/echo_first_voice.py)."""
from __future__ import annotations

import asyncio

import pytest

from clients.clips import Clip
from clients.echo import Room
from clients.echo_talk import barge_in, listen_through
from clients.realtime import RealtimeClient
from tests.e2e.talk import clip, start_long_answer, status_of, turn_story, wer

pytestmark = pytest.mark.slow
RATE = 24000
ROOM = Room(delay_ms=250, level_db=-6, reverb_ms=120, noise_dbfs=-60)
TURN_TIMEOUT = 90


def _clip(name: str) -> Clip:
    pcm, span, ref = clip(name, RATE)
    return Clip(name, pcm, RATE, span, ref)


async def test_a_long_answer_with_its_echo_plays_to_the_end(stack):
    # The answer is sampled: one asked for at length still came out at 7.1 s
    # once (CI, 2026-12-07), too short to say much. Every try must play to its
    # end with no user turn made of its echo; a short one is asked again (at
    # most twice), and an answer never long enough still fails.
    for attempt in range(3):
        heard = await listen_through(stack.ws_url, RATE, ROOM, _clip("0880"))
        print(f"echo {ROOM.delay_ms:.0f} ms {ROOM.level_db:.0f} dB: answer {heard.status}, played "
              f"{heard.played_s:.1f} s, paused {heard.pauses}x, user turns {heard.user_turns}")
        assert heard.status == "completed" and heard.user_turns == 0, heard
        if heard.played_s >= 8.0:
            break
    assert heard.played_s >= 8.0, "every answer was too short to test anything: ask for longer ones"


async def test_a_voice_over_the_answer_and_its_echo_interrupts_it(stack):
    # A sampled answer is sometimes short enough to end before the voice
    # begins: nothing is left to interrupt, so that try tests nothing and is
    # asked again (at most twice). A voice over a playing answer that is
    # never cleared still fails.
    for attempt in range(3):
        b = await barge_in(stack.ws_url, RATE, ROOM, _clip("0880"), _clip("0870"), listen_s=3.0)
        print(f"echo {ROOM.delay_ms:.0f} ms {ROOM.level_db:.0f} dB: barge-in reaction {b.reaction_ms} ms, "
              f"{b.status}/{b.reason}, paused by the echo first: {b.early}, answer ended first: {b.ended_first}")
        if not b.ended_first:
            break
    assert not b.ended_first, "every answer ended before the voice began: ask for longer ones"
    assert b.reaction_ms is not None, "the answer was playing and never cleared"
    assert (b.status, b.reason) == ("cancelled", "turn_detected"), b
    # The reaction time is the benchmark's to judge (bench_echo.py: p95 target
    # 300 ms, not met: 610-1027 ms measured, AEC3 ducks the onset of a voice over
    # a loud echo; issue #13). One turn here only guards against the canceller
    # hiding the voice for seconds (2.4 s before echo_detect.py) or for good:
    # single turns measured 688-1390 ms on the 2-core host, a CI run included.
    assert 0 <= b.reaction_ms <= 2000, b


async def test_a_voice_half_a_second_into_the_first_answer_is_heard_whole(stack):
    """No echo (this client sends digital silence while it listens, as a
    headset would), the interrupting clip played 0.5 s after the first answer
    audio arrived (its voice begins ~0.27 s into it): the answer is cut by a
    turn, and that turn is the whole sentence, heard once."""
    a_pcm, _, _ = clip("0890", RATE)
    b_pcm, b_span, b_ref = clip("0880", RATE)
    async with RealtimeClient(stack.ws_url) as rt:
        mic, first = await start_long_answer(rt, a_pcm, RATE, TURN_TIMEOUT)
        r1 = first.get("response_id")
        await asyncio.sleep(0.5)
        mark = rt.mark()
        utt = mic.play(b_pcm)
        cleared = await rt.wait_for("output_audio_buffer.cleared", since=mark, timeout=20)
        await rt.truncate(first.get("item_id"))
        done1 = await rt.wait_for("response.done", timeout=30, where=lambda e: (e.get("response") or {}).get("id") == r1)
        heard = await rt.wait_for("conversation.item.input_audio_transcription.completed", since=mark,
                                  timeout=TURN_TIMEOUT)
        await asyncio.sleep(2.0)           # a second turn split off the sentence would be committed by now
    story = turn_story(rt.log, mark)
    print(f"cleared {(cleared.t - utt.time_of(b_span.first_sample)) * 1000:.0f} ms after the voice began; "
          f"heard {heard.get('transcript')!r}")
    # (50 ms: the clip's voiced span and the gateway's onset rule measure the same rise two ways.)
    assert cleared.t >= utt.time_of(b_span.first_sample) - 0.05, ("cleared before the user spoke", story)
    assert status_of(done1) == ("cancelled", "turn_detected"), (done1, story)
    assert wer(b_ref, heard.get("transcript", "")) <= 0.25, (heard, story)
    assert len(rt.log.all("input_audio_buffer.committed", since=mark)) == 1, story
