"""Invariant: every ended turn leaves one release sample on the session
store's queue, with the session's canary services, the latencies the client
was told in response.done (voice to voice, ASR final, LLM first token, TTS
first audio), its interim churn and whether it failed; the turn's metrics
carry variant="canary" when a service served it from its canary. Queuing
never waits for Redis and the queue is bounded.

Scripted sessions on a virtual clock with the fake engines."""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from typing import Iterator

from prometheus_client import REGISTRY

from common.clock import VirtualClock
from services.gateway import log_context
from release.samples import Sample
from services.gateway.fakes import FakeBackends
from services.gateway.scripted import ScriptedSession
from services.gateway.settings import GatewaySettings
from services.gateway.store import SAMPLE_QUEUE, SessionStore
from services.gateway.timings import rewrote

SETTINGS = dict(redis_url="", silence_duration_ms=500, vad_min_silence_ms=160, vad_min_speech_ms=120)


def session(variants: dict[str, str] | None = None, **kw) -> ScriptedSession:
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=[(0.5, 2.0)], texts=["what time is it"], replies=("It is noon.",))
    b.llm.token_s = 0.02
    if variants:
        b.variants = {**b.variants, **variants}
    return ScriptedSession(b, clock, GatewaySettings(**(SETTINGS | kw)))


def turns(variant: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("voice_gateway_turns_total", {
        "service": "unknown", "model": "unknown", "variant": variant, "outcome": outcome}) or 0.0


async def test_a_voice_turn_on_a_canary_leaves_its_sample():
    before = turns("canary", "completed")
    async with session({"tts": "canary"}) as s:
        await s.run_audio(3.0)
        await s.wait(3.0)
        done = s.first("response.done").event["response"]
        assert done["status"] == "completed"
        told = json.loads(done["metadata"]["timings"])
        [raw] = list(s.store.samples)
    sample = Sample.decode(raw)
    assert sample.canary == {"tts"} and not sample.failed
    assert sample.v2v_ms == told["voice_to_voice_ms"] and sample.v2v_ms > 0
    assert sample.asr_final_ms == told["asr_final_ms"]
    assert sample.llm_first_token_ms == told["llm_first_token_ms"]
    assert sample.tts_first_audio_ms == told["tts_first_audio_ms"]
    assert sample.churn == 0.0          # the fake's interims only grow, word by word
    assert turns("canary", "completed") == before + 1


async def test_a_failed_turn_is_a_failed_sample_on_stable():
    before = turns("stable", "failed")
    async with session() as s:
        s.b.llm.up = False
        await s.run_audio(3.0)
        await s.wait(2.0)
        assert s.first("response.done").event["response"]["status"] == "failed"
        [raw] = list(s.store.samples)
    sample = Sample.decode(raw)
    assert sample.failed and sample.canary == frozenset() and sample.v2v_ms is None
    assert turns("stable", "failed") == before + 1


def test_the_sample_queue_is_bounded():
    store = SessionStore("", 60)
    for i in range(SAMPLE_QUEUE + 50):
        store.add_sample(Sample(ts=float(i)))
    assert len(store.samples) == SAMPLE_QUEUE
    assert Sample.decode(store.samples[0]).ts == 50.0      # the oldest were dropped


def test_interim_rewrites():
    assert not rewrote("", "hello")
    assert not rewrote("I wan", "I want to")              # the last word was still growing
    assert not rewrote("I want to", "I want to go")
    assert rewrote("I want to", "I went to go")
    assert rewrote("the whether is", "the weather is nice")
    assert not rewrote("Hello, there", "hello there friend")  # case and punctuation are not words


@contextlib.contextmanager
def tagged_logger(name: str) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own, with the session tag filter, writing to a buffer."""
    out = io.StringIO()
    logger = logging.getLogger(name)
    logger.propagate = False
    handler = logging.StreamHandler(out)
    logger.addHandler(handler)
    log_context.install(logger)
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)


async def test_log_lines_inside_a_session_name_its_variants():
    with tagged_logger("test.release.tag") as (logger, out):
        await _tag_in_a_session(logger)
    # The id as redaction cuts it: a whole id resumes a conversation, never logged.
    assert out.getvalue().splitlines() == ["before any session", "turn 3 failed [sess_053417… canary=tts]",
                                           "after it"]


async def _tag_in_a_session(logger: logging.Logger) -> None:
    logger.warning("before any session")

    async def session():
        log_context.set_session("sess_0534173243534501c03a", {"asr": "stable", "tts": "canary"})
        # A task the session starts inherits the tag (asyncio copies the context).
        await asyncio.create_task(asyncio.to_thread(lambda: None))
        await asyncio.create_task(_log(logger, "turn %d failed", 3))

    await asyncio.create_task(session())
    logger.warning("after it")


async def _log(logger, msg, *args):
    logger.warning(msg, *args)


async def test_a_session_resumed_on_its_connection_retags_the_tasks_already_running():
    with tagged_logger("test.release.retag") as (logger, out):
        await _retag_on_a_connection(logger)
    assert out.getvalue().splitlines() == ["pump [sess_bbbbbb… canary=tts]", "handler [sess_bbbbbb… canary=tts]"]


async def _retag_on_a_connection(logger: logging.Logger) -> None:
    resumed = asyncio.Event()

    async def pump():            # started before the resume, like the audio pump
        await resumed.wait()
        logger.warning("pump")

    async def connection():
        log_context.set_session("sess_aaaaaa00000000000000", {"tts": "stable"})
        task = asyncio.create_task(pump())
        log_context.retag("sess_bbbbbb00000000000000", {"tts": "canary"})   # session.update resume
        resumed.set()
        await task
        logger.warning("handler")

    await asyncio.create_task(connection())
