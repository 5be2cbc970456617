"""The page against the real stack (five speech services on real models and the
gateway), in real headless Chromium with recorded speech as the microphone.

Invariants: a spoken question comes back as the user's transcript, an answer's
text and audio that the playback worklet plays; talking over the answer stops
playback, the truncate with the milliseconds actually played reaches the gateway
(it echoes conversation.item.truncated with that exact value) and the unheard
words are marked; typing works; after the gateway process restarts the page
reconnects by itself to the same session; a blocked microphone is explained.
"""
from __future__ import annotations

import re
import time

import jiwer
import pytest

from tests.browser import audio_files
from tests.browser.conftest import hook, shot, wait_hook

pytestmark = pytest.mark.slow
MEASURED: dict[str, float] = {}   # voice-to-voice seen by the question test, to place the interruption
LONG_ANSWERS = "Answer in five or six full spoken sentences, with detail."


def set_instructions(page, text: str) -> None:
    page.click("#settings-open")
    page.fill("#instructions", text)
    page.dispatch_event("#instructions", "change")
    page.click("#settings-close")
    wait_hook(page, "t.sessionUpdates >= 2", 10)


def test_spoken_question_gets_a_spoken_answer(launch, real_stack, tmp_path):
    wav = audio_files.question_wav(tmp_path / "question.wav")
    page = launch(real_stack.http_url + "/", wav)
    page.click("#mic-btn")
    wait_hook(page, "t.userTranscripts.length > 0", 90)
    heard = hook(page, "userTranscripts")[0]
    ref = audio_files.reference(audio_files.QUESTION_CLIP)
    words = re.sub(r"[^a-z' ]", " ", heard.lower()).split()
    assert jiwer.wer(ref, " ".join(words)) < 0.5, heard   # the browser's noise suppression costs a little
    assert page.locator("li.msg.user .text").first.inner_text().strip()
    wait_hook(page, "t.playback.samplesPlayed > 12000", 90)
    shot(page, "stack-01-speaking")
    wait_hook(page, "t.responses.length > 0", 120)
    t = hook(page)
    assert t["responses"][0]["status"] == "completed", t["responses"]
    assert t["assistantText"].strip()
    assert t["playback"]["framesReceived"] > 0 and t["playback"]["samplesPlayed"] > 0
    timings = t["responses"][0]["timings"]
    assert timings and timings["voice_to_voice_ms"] > 0
    MEASURED["v2v_ms"] = timings["voice_to_voice_ms"]
    wait_hook(page, "t.state === 'listening'", 120)
    assert page.locator("li.msg.assistant .turn-latency").count() == 1
    shot(page, "stack-02-answered")


def answer_over_before_the_interruption(page) -> bool:
    """The interruption was heard as a turn of its own, after the first answer
    had played to its end uncut (the small model, asked for long answers,
    sometimes gives one short sentence: CI, 2026-12-07, "Yes, and they'll
    dispose of him.", 1.6 s): nothing was left to talk over."""
    t = hook(page)
    return (not t["truncates"] and len(t["userTranscripts"]) >= 2 and not t["clears"]
            and t["serverEvents"].get("output_audio_buffer.stopped", 0) >= 1
            and t["responses"] and t["responses"][0]["status"] == "completed")


def test_talking_over_the_answer_interrupts_it(launch, real_stack, tmp_path):
    # the second utterance starts once the answer has been playing for a couple of seconds
    gap = MEASURED.get("v2v_ms", 3000) / 1000 + 2.5
    wav = audio_files.interruption_wav(tmp_path / "interrupt.wav", gap_s=gap)
    for attempt in range(3):         # a new page (and session) when the answer was too short to cut
        page = launch(real_stack.http_url + "/", wav)
        set_instructions(page, LONG_ANSWERS)
        page.click("#mic-btn")
        wait_hook(page, "t.playback.samplesPlayed > 0", 120)
        wait_hook(page, "t.truncates.length > 0 || (t.userTranscripts.length >= 2 && !t.playback.playing)", 60)
        if not answer_over_before_the_interruption(page):
            break
        print(f"attempt {attempt + 1}: the answer ended before the interruption; asking again")
    wait_hook(page, "t.truncates.length > 0", 5)
    t = hook(page)
    trunc = t["truncates"][0]
    played = t["playback"]["samplesPlayed"]
    time.sleep(0.4)
    after = hook(page, "playback")
    # stopped: nothing more rendered (unless the gateway resumed a false interruption)
    assert after["samplesPlayed"] == played or hook(page, "resumes") > 0
    assert 200 < trunc["audio_end_ms"] <= after["samplesReceived"] / 24, (trunc, after)
    # the gateway applied our truncate: it echoes the exact audio_end_ms we sent
    wait_hook(page, f"t.truncatedConfirmed.some(c => c.audio_end_ms === {trunc['audio_end_ms']})", 15)
    wait_hook(page, "document.querySelector('li.msg.assistant .unheard') !== null", 15)
    assert page.locator("li.msg.assistant .unheard").first.inner_text().strip()
    shot(page, "stack-03-interrupted")
    # the interruption itself is a user turn that gets answered
    wait_hook(page, "t.userTranscripts.length >= 2", 90)
    wait_hook(page, "t.responses.some(r => r.status === 'completed')", 120)
    shot(page, "stack-04-after-interruption")


def test_typed_question_gets_an_answer(launch, real_stack):
    page = launch(real_stack.http_url + "/")
    page.fill("#text-input", "What is the capital of France?")
    page.press("#text-input", "Enter")
    wait_hook(page, "t.playback.framesReceived > 0", 90)
    wait_hook(page, "t.responses.length > 0", 120)
    t = hook(page)
    assert t["responses"][0]["status"] == "completed"
    assert t["assistantText"].strip()
    wait_hook(page, "t.playback.samplesPlayed > 0", 30)
    shot(page, "stack-05-typed")


def test_reconnects_to_the_same_session_after_a_gateway_restart(launch, real_stack):
    page = launch(real_stack.http_url + "/")
    sid = hook(page, "sessionId")
    page.fill("#text-input", "Remember the word banana.")
    page.press("#text-input", "Enter")
    wait_hook(page, "t.responses.length > 0", 120)
    real_stack.restart_gateway()
    wait_hook(page, "t.reconnects >= 1 && t.connection === 'open'", 60)
    assert hook(page, "sessionId") == sid
    assert page.locator("li.notice", has_text="The conversation continues").count() == 1
    page.fill("#text-input", "What word did I ask you to remember?")
    page.press("#text-input", "Enter")
    wait_hook(page, "t.responses.length > 1", 120)
    assert hook(page, "responses")[1]["status"] == "completed"
    shot(page, "stack-06-reconnected")


def test_blocked_microphone_is_explained_on_the_real_page(launch, real_stack):
    page = launch(real_stack.http_url + "/", allow_mic=False)
    page.click("#mic-btn")
    wait_hook(page, "t.micError !== null", 10)
    assert "Microphone access was blocked" in page.inner_text("#banner")
    shot(page, "stack-07-mic-denied")
