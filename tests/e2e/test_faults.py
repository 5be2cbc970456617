"""A backend lost in the middle of a turn, on the real stack with real
speech: the LLM connection reset while the answer streams, and the ASR
hanging (accepting audio, never answering) while the user speaks. Faults
come from the gateway's own fault injection (/admin/faults), so the real
services stay up and nothing but the injected fault differs.

Invariants: the client gets an ``error`` naming the service; the turn ends
in a defined way (the response ``failed``, or, without a transcript, no
turn); the answer's unspoken part is not in the session's history; the
session goes on and the next turn is answered once the fault is over,
without the client reconnecting."""
from __future__ import annotations

import time

import httpx
import pytest

from clients import events
from clients.realtime import RealtimeClient
from tests.e2e.conftest import ADMIN_KEY
from tests.e2e.talk import LONG_REPLY_INSTRUCTIONS, clip, status_of

pytestmark = pytest.mark.slow
RATE = 24000
TURN_TIMEOUT = 90
IDLE_S = 15.0           # GATEWAY_BACKEND_IDLE_TIMEOUT_S default
RESET_AFTER = 60        # LLM messages (tokens) that get through before the injected reset


def output_tokens(done) -> int:
    return int(((done.get("response") or {}).get("usage") or {}).get("output_tokens") or 0)


def admin(stack) -> httpx.Client:
    return httpx.Client(base_url=stack.http_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)


def set_fault(stack, **body) -> None:
    with admin(stack) as c:
        r = c.post("/admin/faults", json=body)
        assert r.status_code == 200, r.text


def clear_faults(stack) -> None:
    with admin(stack) as c:
        c.delete("/admin/faults")


async def answered(rt: RealtimeClient, mic, pcm: bytes) -> None:
    """The next spoken turn completes (the session recovered). An answer
    cancelled on the way is skipped: CI 2026-12-07 saw clip 0920's first
    answer cancelled 1.1 s after its audio began, most likely a pause inside
    the clip taken as the turn's end and the speech after it a barge-in (the
    split turns of issue #13); what this test checks is that a turn is
    answered, and a failed one still fails it."""
    mark = rt.mark()
    mic.play(pcm)
    done = await rt.wait_for("response.done", since=mark, timeout=TURN_TIMEOUT,
                             where=lambda e: status_of(e)[0] != "cancelled")
    assert status_of(done)[0] == "completed", done
    # Listen to the end, so the next clip is a new turn, not a barge-in.
    rid = done.get("response")["id"]
    await rt.wait_for("output_audio_buffer.stopped", since=mark, timeout=TURN_TIMEOUT,
                      where=lambda e: e.get("response_id") == rid)


async def test_llm_reset_while_the_answer_streams(stack):
    pcm, _, _ = clip("0890", RATE)
    pcm2, _, _ = clip("0920", RATE)
    try:
        async with RealtimeClient(stack.ws_url) as rt:
            await rt.update_session(events.session_config(input_rate=RATE, output_rate=RATE,
                                                          instructions=LONG_REPLY_INSTRUCTIONS))
            sid = rt.session["id"]
            mic = rt.start_microphone(RATE)
            # 60 tokens get through (the first clauses are spoken), then the
            # connection resets. The 135M model sometimes tells its "story" in
            # fewer tokens (37 seen): such a turn never meets the fault and is
            # heard to its end, and the next question is asked (three at most).
            set_fault(stack, service="llm", kind="reset", after_messages=RESET_AFTER, duration_s=120)
            for _ in range(3):
                mark = rt.mark()
                mic.play(pcm)
                done = await rt.wait_for("response.done", since=mark, timeout=TURN_TIMEOUT)
                if not (status_of(done)[0] == "completed" and output_tokens(done) < RESET_AFTER):
                    break
                await rt.wait_for("output_audio_buffer.stopped", since=mark, timeout=TURN_TIMEOUT,
                                  where=lambda e, rid=done.get("response")["id"]: e.get("response_id") == rid)
            clear_faults(stack)
            assert status_of(done)[0] == "failed", done
            err = rt.log.find("error", since=mark)
            assert err is not None and err.get("error")["code"] == "backend_unavailable"
            assert err.get("error")["message"].startswith("llm at "), err
            rid = done.get("response")["id"]
            said = " ".join(e.get("delta", "").strip() for e in rt.log.all(
                "response.output_audio_transcript.delta", since=mark) if e.get("response_id") == rid).split()
            item = done.get("response")["output"][0]
            kept = (item["content"][0].get("transcript") or "").split()
            assert said, "no clause was spoken before the reset: the fault came too early to test this"
            assert kept == said[:len(kept)], (kept, said)       # only words the client got, in order
            await answered(rt, mic, pcm2)                       # same connection: no reconnect
        async with RealtimeClient(stack.ws_url, session_id=sid) as rt2:
            items = rt2.session.get("conversation_items") or []
            stored = next(i for i in items if i["id"] == item["id"])
            assert (stored["content"][0].get("transcript") or "").split() == kept
    finally:
        clear_faults(stack)


async def test_asr_hang_while_the_user_speaks(stack):
    pcm, _, _ = clip("0890", RATE)
    pcm2, _, _ = clip("0920", RATE)
    try:
        async with RealtimeClient(stack.ws_url) as rt:
            await rt.update_session(events.session_config(input_rate=RATE, output_rate=RATE))
            mic = rt.start_microphone(RATE)
            await answered(rt, mic, pcm)                        # a working session first
            set_fault(stack, service="asr", kind="hang", duration_s=120)
            mark = rt.mark()
            await mic.say(pcm2)
            spoken = time.monotonic()
            err = await rt.wait_for("error", since=mark, timeout=IDLE_S + 30)
            assert err.get("error")["code"] == "backend_unavailable"
            assert err.get("error")["message"].startswith("asr at ") and "no reply" in err.get("error")["message"]
            assert err.t - spoken < IDLE_S * 1.25 + 10, err.t - spoken
            assert rt.log.find("response.done", since=mark) is None or status_of(
                rt.log.find("response.done", since=mark))[0] != "completed"
            clear_faults(stack)
            await answered(rt, mic, pcm)                        # same connection: no reconnect
    finally:
        clear_faults(stack)
