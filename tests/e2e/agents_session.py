"""A session of the `openai-agents` package's RealtimeAgent, with its default
settings (turn_detection semantic_vad), against the local gateway; run by
tests/e2e/test_openai_agents.py inside .venv-agents (scripts/agents_venv.sh).

Standard library + openai-agents only. Starts the session, waits for
session.updated, then speaks a real clip (16 kHz, sent at 24 kHz, the
agent's default format) at real time followed by silence and waits for the
response to finish. Prints one JSON summary on stdout: every server event
type seen, the error events, the echoed turn_detection, the transcript.

    python agents_session.py --url ws://127.0.0.1:8000/v1/realtime --clip a.wav
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
import wave
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop   # stdlib until 3.13: the venv has no numpy for resampling

from agents.realtime import RealtimeAgent, RealtimeRunner

RATE, FRAME_MS = 24000, 20


def read_clip(path: str) -> bytes:
    with wave.open(path, "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (16000, 1, 2):
            raise SystemExit(f"{path}: need 16 kHz mono PCM16")
        pcm = w.readframes(w.getnframes())
    return audioop.ratecv(pcm, 2, 1, 16000, RATE, None)[0]


async def speak(session, pcm: bytes, silence_s: float) -> None:
    step = RATE * 2 * FRAME_MS // 1000
    audio = pcm + b"\x00\x00" * int(RATE * silence_s)
    t0 = time.monotonic()
    for i, off in enumerate(range(0, len(audio), step)):
        await session.send_audio(audio[off:off + step])
        await asyncio.sleep(max(0.0, t0 + (i + 1) * FRAME_MS / 1000 - time.monotonic()))


async def main(url: str, clip: str, timeout: float) -> dict:
    agent = RealtimeAgent(name="Assistant", instructions="Answer in one short sentence.")
    runner = RealtimeRunner(agent)   # the package's default model settings: semantic_vad
    summary: dict = {"server_events": [], "errors": [], "turn_detection": None, "transcript": ""}
    session = await runner.run(model_config={"url": url, "api_key": "local-gateway"})
    updated = asyncio.Event()
    done = asyncio.Event()

    async def listen() -> None:
        async for event in session:
            if event.type == "error":
                summary["errors"].append(repr(event.error))
            if event.type != "raw_model_event":
                continue
            data = event.data
            if data.type == "error":
                summary["errors"].append(repr(data.error))
            if data.type != "raw_server_event" or not isinstance(data.data, dict):
                continue
            raw = data.data
            summary["server_events"].append(raw.get("type"))
            if raw.get("type") == "error":
                summary["errors"].append(raw.get("error"))
            elif raw.get("type") == "session.updated":
                td = ((raw.get("session") or {}).get("audio") or {}).get("input", {}).get("turn_detection")
                summary["turn_detection"] = td
                updated.set()
            elif raw.get("type") == "conversation.item.input_audio_transcription.completed":
                summary["transcript"] += raw.get("transcript", "")
            elif raw.get("type") == "response.done":
                summary["response_status"] = (raw.get("response") or {}).get("status")
                done.set()

    async with session:
        task = asyncio.create_task(listen())
        try:
            await asyncio.wait_for(updated.wait(), timeout)
            await speak(session, read_clip(clip), silence_s=2.0)
            try:
                await asyncio.wait_for(done.wait(), timeout)
            except asyncio.TimeoutError:
                raise SystemExit(f"no response.done within {timeout} s; events so far: "
                                 f"{json.dumps(summary)}") from None
            await asyncio.sleep(0.5)   # an error sent after the response would show here
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return summary


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--clip", required=True)
    p.add_argument("--timeout", type=float, default=90.0)
    a = p.parse_args()
    print(json.dumps(asyncio.run(main(a.url, a.clip, a.timeout))))
