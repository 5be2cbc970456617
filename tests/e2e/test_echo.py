"""A user on loudspeakers (issue #13): the assistant's own voice comes back
into the microphone (clients/echo.py: 250 ms late, only 6 dB down, with a
room's reverberation and noise, the worst case the issue names).

Invariants, on the real services with real speech at real time: a long
answer plays to its end with its echo in the microphone (completed, never
cancelled, no user turn made of it); a real voice spoken over the answer and
its echo still interrupts it (turn_detected), promptly."""
from __future__ import annotations

import pytest

from clients.clips import Clip
from clients.echo import Room
from clients.echo_talk import barge_in, listen_through
from tests.e2e.talk import clip

pytestmark = pytest.mark.slow
RATE = 24000
ROOM = Room(delay_ms=250, level_db=-6, reverb_ms=120, noise_dbfs=-60)


def _clip(name: str) -> Clip:
    pcm, span, ref = clip(name, RATE)
    return Clip(name, pcm, RATE, span, ref)


async def test_a_long_answer_with_its_echo_plays_to_the_end(stack):
    heard = await listen_through(stack.ws_url, RATE, ROOM, _clip("0880"))
    print(f"echo {ROOM.delay_ms:.0f} ms {ROOM.level_db:.0f} dB: answer {heard.status}, played "
          f"{heard.played_s:.1f} s, paused {heard.pauses}x, user turns {heard.user_turns}")
    assert heard.played_s >= 8.0, "the answer is too short to test anything: ask for a longer one"
    assert heard.status == "completed" and heard.user_turns == 0, heard


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
