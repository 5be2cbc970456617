"""Helpers the e2e tests share: real clips at the session's rate with their
energy-based speech span, transcript scoring, the timings metadata, and the
speech services' own GetStatus counters (over gRPC, as an operator sees them)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import grpc
import jiwer

from clients import events
from clients.eventlog import ServerEvent
from clients.speech import VoicedSpan, voiced_span
from common.audio import read_wav, resample_pcm16
from common.stubs import common_pb2, llm_pb2_grpc, tts_pb2_grpc
from tests.procs import clips

TIMING_KEYS = ("speech_end_ms", "endpoint_ms", "asr_final_ms", "llm_first_token_ms",
               "tts_first_audio_ms", "voice_to_voice_ms")
OPTIONAL_TIMING_KEYS = ("retrieval_ms",)   # only when retrieval ran this turn

# A tiny LLM stops early unless asked for length; barge-in tests need a reply
# that is still playing when the user cuts in.
LONG_REPLY_INSTRUCTIONS = ("You are a storyteller. Answer every message with a long story of "
                           "at least eight full sentences. Never answer briefly.")


async def start_long_answer(rt: Any, pcm: bytes, rate: int, timeout: float) -> tuple[Any, ServerEvent]:
    """A session asked for long replies (``rt``, a RealtimeClient), its
    microphone started and ``pcm`` said into it: the microphone and the
    answer's first audio delta."""
    await rt.update_session(events.session_config(
        input_rate=rate, output_rate=rate, instructions=LONG_REPLY_INSTRUCTIONS))
    mic = rt.start_microphone(rate)
    mic.play(pcm)
    return mic, await rt.wait_for("response.output_audio.delta", timeout=timeout)


def clip(name: str, rate: int) -> tuple[bytes, VoicedSpan, str]:
    """(pcm at ``rate``, its voiced span, reference text) of a project clip by stem suffix."""
    for path, ref in clips():
        if path.stem.endswith(name):
            return load(path, rate) + (ref,)
    raise KeyError(f"no clip named *{name}")


def load(path: Path, rate: int) -> tuple[bytes, VoicedSpan]:
    pcm, src = read_wav(path)
    pcm = resample_pcm16(pcm, src, rate)
    return pcm, voiced_span(pcm, rate)


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalise(reference), normalise(hypothesis) or "<empty>")


def metadata(done: ServerEvent) -> dict[str, Any]:
    return (done.get("response") or {}).get("metadata") or {}


def timings(done: ServerEvent) -> dict[str, float]:
    raw = metadata(done).get("timings")
    assert raw, f"response.done without metadata.timings: {done}"
    return json.loads(raw)


def status_of(done: ServerEvent) -> tuple[str, str | None]:
    resp = done.get("response") or {}
    return resp.get("status"), (resp.get("status_details") or {}).get("reason")


async def service_status(address: str, service: str) -> Any:
    """A speech service's ServiceStatus (stream counts) via its GetStatus RPC."""
    stub_cls = {"llm": llm_pb2_grpc.ChatStub, "tts": tts_pb2_grpc.SynthesizerStub}[service]
    async with grpc.aio.insecure_channel(address) as ch:
        return await stub_cls(ch).GetStatus(common_pb2.StatusRequest(), timeout=10)


def turn_story(log: Any, since: int, gateway: Any = None) -> str:
    """What a failed turn assertion needs to be diagnosed from a CI log alone:
    the turn events since ``since`` (with their arrival times and items), the
    errors, and the gateway's own lines about turns (dropped speech, false
    interruptions, backend warnings; transcripts stay out of its INFO log)."""
    keep = ("input_audio_buffer.", "output_audio_buffer.", "response.created", "response.done",
            "conversation.item.input_audio_transcription.completed", "error")
    lines = [f"{e.t:.3f} {e.type} item={e.get('item_id')} "
             f"response={e.get('response_id') or (e.get('response') or {}).get('id')} "
             f"{e.get('transcript') or e.get('error') or ''} {e.get('usage') or ''}"
             for e in log.all(since=since) if e.type.startswith(keep)]
    if gateway is not None:
        text = gateway.log_path.read_text(errors="replace") if gateway.log_path.exists() else ""
        lines += ["gateway log:"] + [ln for ln in text.splitlines()
                                     if any(w in ln for w in ("dropped", "false interruption", "resumed",
                                                              "WARNING", "ERROR", "no final", " is back"))][-40:]
    return "\n".join(lines)
