"""The transcript guard against the reply's own echo (services/gateway/echo_words.py).

Invariants: speech over the reply whose transcript is mostly the words the
assistant just spoke (its own voice back through the user's speakers) pauses
the reply but never cancels it: the reply resumes and plays to the end, no
user turn is made and its words are not shown; speech with words of its own
still interrupts at the usual time; only the reply around the speech
counts (1.5 s before the speech to 0.5 s after it), so the user repeating a
word the reply said a few seconds earlier is not taken for its echo."""
from __future__ import annotations

from prometheus_client import REGISTRY

from common.clock import VirtualClock
from services.gateway.echo_words import is_echo, spoken_words
from services.gateway.fakes import FakeBackends
from services.gateway.scripted import STEP_S, ScriptedSession
from services.gateway.session import Clause
from services.gateway.settings import GatewaySettings

QUESTION = "what is the weather like today"
REPLY = ("The weather today is sunny and warm with a light breeze from the west. "
         "Later this afternoon some clouds will roll in, but no rain is expected, "
         "so it is a fine day for a walk.")
SETTINGS = dict(redis_url="", silence_duration_ms=500, vad_min_silence_ms=160, vad_min_speech_ms=120,
                prefix_padding_ms=300, min_interrupt_ms=300, false_interruption_timeout_ms=800)


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": "unknown", "model": "unknown",
                                            "variant": "stable"}) or 0.0


def session(over_reply: str) -> ScriptedSession:
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=[(0.5, 2.5), (5.0, 5.8)], texts=[QUESTION, over_reply],
                            replies=(REPLY, "Okay."))
    b.tts.rtf = 0.5
    return ScriptedSession(b, clock, GatewaySettings(**SETTINGS))


def test_only_the_reply_around_the_speech_counts():
    clauses = [Clause("the weather today", 0, 2000), Clause("is sunny and warm", 2000, 4000),
               Clause("later some clouds", 4000, 6000), Clause("but no rain", 6000, 8000),
               Clause("a fine day", 8000, 10000)]
    # Speech from the reply's 7.0 s to 9.0 s: the reply from 5.5 s to 9.5 s.
    recent = spoken_words(clauses, 7000, 9000)
    assert recent == "later some clouds but no rain a fine day".split()
    assert is_echo("Later, some clouds... but no", recent)
    assert not is_echo("the weather today", recent)            # said too long before
    assert not is_echo("stop, no, tell me about tomorrow", recent)
    assert is_echo("some clouds but rain no a", recent)        # an ASR error or two still echo
    assert not is_echo("", recent) and not is_echo("anything", [])
    # "...but no rain." then the user, 2 s later: "rain?" is theirs, not the echo.
    assert not is_echo("rain", spoken_words(clauses, 10000, 10400))


def test_a_question_sharing_the_replys_words_in_its_own_order_is_not_its_echo():
    # A small model often says the user's words back; the user then talks over it
    # with a question of the same words (the likely cause of a load test's failed turn,
    # 2026-12-01: a clip said over a reply, taken for echo, the reply resumed).
    recent = spoken_words([Clause("The man was young, and he was not bad.", 0, 3000)], 500, 2500)
    assert not is_echo("Was he not a young man?", recent)        # 3 of 6 in order (5 of 6 as a set)
    assert is_echo("the man was young and he not bad", recent)   # the reply's own run, a word lost


async def test_the_replys_own_words_over_it_do_not_cancel_it():
    echoes = metric("voice_gateway_echo_transcripts_total")
    async with session("the weather today is sunny") as s:
        await s.run_audio(16.0)
        assert s.first("output_audio_buffer.cleared")                  # the VAD heard it: paused
        done = s.first("response.done")
        assert done.event["response"]["status"] == "completed"         # ... but it played on
        assert len(s.of("output_audio_buffer.started")) == 2
        assert not s.of("conversation.item.truncated")
        assert len(s.of("input_audio_buffer.committed")) == 1         # only the question
        assert all("sunny" not in e.event["transcript"]
                   for e in s.of("conversation.item.input_audio_transcription.delta"))
        assert len(s.b.llm.requests) == 1
        assert metric("voice_gateway_echo_transcripts_total") > echoes


async def test_words_of_the_users_own_still_interrupt_on_time():
    async with session("wait no tell me about tomorrow instead") as s:
        await s.run_audio(8.0)
        done = s.first("response.done")
        assert done.event["response"]["status"] == "cancelled"
        assert abs(done.at - 5.30) <= STEP_S + 1e-6                    # as without the guard


async def test_the_users_words_mixed_with_the_echo_interrupt():
    async with session("the weather today stop stop tell me about tomorrow instead") as s:
        await s.run_audio(8.0)
        assert s.first("response.done").event["response"]["status"] == "cancelled"


async def test_on_a_headset_the_replys_own_words_are_the_users():
    # A near-field microphone carries no echo: the user saying the reply's words
    # over it (a small model said the question back; the user asks it again)
    # interrupts, as any words of their own do.
    async with session("the weather today is sunny") as s:
        await s.send({"type": "session.update",
                      "session": {"audio": {"input": {"noise_reduction": {"type": "near_field"}}}}})
        await s.run_audio(8.0)
        assert s.first("response.done").event["response"]["status"] == "cancelled"
        assert len(s.of("input_audio_buffer.committed")) == 2


async def test_once_the_mic_is_found_to_carry_no_echo_the_replys_words_interrupt():
    async with session("the weather today is sunny") as s:
        await s.run_audio(4.0)                     # the reply plays from ~3 s
        assert s.conv.echo is not None
        s.conv.echo.canceller.detector.state = "none"   # echo_detect.py's verdict (tested there)
        await s.run_audio(4.0)
        assert s.first("response.done").event["response"]["status"] == "cancelled"
        assert len(s.of("input_audio_buffer.committed")) == 2
