"""A spoken conversation held with the official ``openai`` package against the
local gateway; run by tests/e2e/test_openai_client.py inside .venv-openai
(scripts/openai_venv.sh), because openai pins websockets<16.

Standard library + openai only (that venv has nothing else). Turn 1: a real
clip and silence streamed at real time, server VAD ends the turn, the reply is
transcribed, spoken and completed. Turn 2: another clip; as soon as its reply
starts speaking the client sends response.cancel, then truncates the item.
Turn 3: a function tool offered through session.update (tool_choice
required), a typed question, the call read from the package's typed events,
the function's output sent back, and the answer in words.
Prints one JSON summary on stdout for the test to assert on.

    python openai_conversation.py --base ws://127.0.0.1:8000/v1 --clip a.wav --clip b.wav
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
import wave
from typing import Any

from openai import AsyncOpenAI

RATE = 16000          # the clips' rate; the gateway accepts 16 kHz input
FRAME_MS = 20
# Short answers keep turn 1 (played out in full, at real time) brief; turn 2 is
# cancelled at its first audio delta, long before even a short answer is sent.
INSTRUCTIONS = "You are a helpful voice assistant. Answer in one or two short sentences."


def read_clip(path: str) -> bytes:
    with wave.open(path, "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (RATE, 1, 2):
            raise SystemExit(f"{path}: need 16 kHz mono PCM16")
        return w.readframes(w.getnframes())


class Recorder:
    """Every server event as (arrival time, type, event), with waiting."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, Any]] = []
        self.cv = asyncio.Condition()

    async def pump(self, conn: Any) -> None:
        async for ev in conn:
            async with self.cv:
                self.events.append((time.monotonic(), ev.type, ev))
                self.cv.notify_all()

    async def wait(self, type_: str, since: int = 0, where=lambda e: True, timeout: float = 90) -> tuple[int, Any]:
        async def found() -> tuple[int, Any] | None:
            for i, (_, t, e) in enumerate(self.events[since:], since):
                if t == type_ and where(e):
                    return i, e
            return None

        async with self.cv:
            deadline = time.monotonic() + timeout
            while (hit := await found()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [t for _, t, _ in self.events[since:] if not t.endswith(".delta")]
                    raise TimeoutError(f"no {type_} in {timeout} s; saw {seen[-30:]}")
                try:
                    await asyncio.wait_for(self.cv.wait(), left)
                except TimeoutError:
                    pass  # loop re-checks and reports what was seen
            return hit


class Mic:
    """Real-time input: queued clips, silence in between, 20 ms frames."""

    def __init__(self, conn: Any) -> None:
        self.conn, self.queue = conn, bytearray()

    async def run(self) -> None:
        step = RATE * FRAME_MS // 1000 * 2
        t0, sent = time.monotonic(), 0
        while True:
            frame = bytes(self.queue[:step])
            del self.queue[:step]
            frame += b"\x00" * (step - len(frame))
            sent += len(frame) // 2
            await asyncio.sleep(max(0.0, t0 + sent / RATE - time.monotonic()))
            await self.conn.input_audio_buffer.append(audio=base64.b64encode(frame).decode())


WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather of a city.",
           "parameters": {"type": "object", "properties": {
               "city": {"type": "string", "maxLength": 40},
               "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
               "required": ["city", "unit"]}}


async def tool_turn(conn: Any, rec: Recorder) -> dict[str, Any]:
    """Turn 3: the tool is called, its output answered."""
    mark = len(rec.events)
    await conn.session.update(session={"type": "realtime", "tools": [WEATHER], "tool_choice": "required"})
    await rec.wait("session.updated", mark, timeout=20)
    await conn.conversation.item.create(item={
        "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "What is the weather in Paris right now?"}]})
    mark = len(rec.events)
    await conn.response.create()
    _, args = await rec.wait("response.function_call_arguments.done", mark)
    _, done = await rec.wait("response.done", mark, where=lambda e: e.response.id == args.response_id)
    out = done.response.output or []
    call = {"status": done.response.status, "output_types": [o.type for o in out],
            "call_id": args.call_id, "name": args.name, "arguments": args.arguments,
            "item_call_id": getattr(out[0], "call_id", None) if out else None}
    mark = len(rec.events)
    await conn.conversation.item.create(item={
        "type": "function_call_output", "call_id": args.call_id,
        "output": json.dumps({"city": "Paris", "sky": "sunny", "temperature_c": 21})})
    await conn.response.create(response={"tool_choice": "auto"})
    _, created = await rec.wait("response.created", mark)
    _, done2 = await rec.wait("response.done", mark, where=lambda e: e.response.id == created.response.id)
    answer = ""
    for item in done2.response.output or []:
        for part in getattr(item, "content", None) or []:
            answer += getattr(part, "transcript", None) or getattr(part, "text", None) or ""
    return {"call": call, "answer_status": done2.response.status, "answer": answer,
            "answer_types": [o.type for o in done2.response.output or []]}


def response_of(ev: Any) -> tuple[str | None, str | None, str | None]:
    r = ev.response
    details = getattr(r, "status_details", None)
    return r.id, r.status, getattr(details, "reason", None) if details else None


async def converse(base: str, clip_a: bytes, clip_b: bytes) -> dict[str, Any]:
    client = AsyncOpenAI(api_key="local", websocket_base_url=base)
    summary: dict[str, Any] = {"turns": []}
    async with client.realtime.connect(model="local") as conn:
        rec, mic = Recorder(), Mic(conn)
        pump = asyncio.create_task(rec.pump(conn))
        mic_task: asyncio.Task[None] | None = None
        try:
            _, created = await rec.wait("session.created", timeout=20)
            summary["session_id"] = created.session.id if getattr(created, "session", None) else None
            await conn.session.update(session={
                "type": "realtime", "instructions": INSTRUCTIONS, "output_modalities": ["audio"],
                "audio": {
                    "input": {"format": {"type": "audio/pcm", "rate": RATE},
                              "turn_detection": {"type": "server_vad", "create_response": True,
                                                 "interrupt_response": True}},
                    "output": {"format": {"type": "audio/pcm", "rate": 24000}},
                },
            })
            await rec.wait("session.updated", timeout=20)
            mic_task = asyncio.create_task(mic.run())

            # turn 1: spoken, answered, completed
            mark = len(rec.events)
            mic.queue += clip_a
            _, final = await rec.wait("conversation.item.input_audio_transcription.completed", mark)
            i_done, done = await rec.wait("response.done", mark)
            rid, status, reason = response_of(done)
            audio = [e for _, t, e in rec.events[mark:] if t == "response.output_audio.delta"
                     and e.response_id == rid]
            summary["turns"].append({
                "transcript": final.transcript, "response_id": rid, "status": status,
                "reason": reason, "audio_deltas": len(audio),
                "audio_bytes": sum(len(base64.b64decode(e.delta)) for e in audio),
                "metadata": getattr(done.response, "metadata", None),
            })

            # turn 2: cancelled by the client as soon as the reply speaks
            mark = i_done + 1
            mic.queue += clip_b
            _, final2 = await rec.wait("conversation.item.input_audio_transcription.completed", mark)
            _, first = await rec.wait("response.output_audio.delta", mark)
            await conn.response.cancel()
            _, done2 = await rec.wait("response.done", mark,
                                      where=lambda e: e.response.id == first.response_id)
            rid2, status2, reason2 = response_of(done2)
            await conn.conversation.item.truncate(item_id=first.item_id, content_index=0,
                                                  audio_end_ms=200)
            _, trunc = await rec.wait("conversation.item.truncated", mark,
                                      where=lambda e: e.item_id == first.item_id, timeout=20)
            summary["turns"].append({
                "transcript": final2.transcript, "response_id": rid2, "status": status2,
                "reason": reason2, "truncated_audio_end_ms": trunc.audio_end_ms,
            })
            summary["tools"] = await tool_turn(conn, rec)
        finally:
            for task in (mic_task, pump):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (mic_task, pump) if t), return_exceptions=True)
    summary["errors"] = [e.error.model_dump() if hasattr(e.error, "model_dump") else str(e.error)
                         for _, t, e in rec.events if t == "error"]
    summary["event_types"] = [t for _, t, _ in rec.events if not t.endswith(".delta")]
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="websocket_base_url, e.g. ws://127.0.0.1:8000/v1")
    p.add_argument("--clip", action="append", required=True, help="two 16 kHz mono WAVs")
    args = p.parse_args()
    if len(args.clip) != 2:
        p.error("give --clip twice")
    summary = asyncio.run(converse(args.base, read_clip(args.clip[0]), read_clip(args.clip[1])))
    json.dump(summary, sys.stdout, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
