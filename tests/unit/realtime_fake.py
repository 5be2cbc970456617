"""A scripted stand-in for the gateway's Realtime protocol, for testing the
protocol clients, the benchmark and the load-test plumbing without models.

Energy decides speech (frame RMS above -40 dBFS); 500 ms of silence ends the
turn; the reply is 2 s of a tone sent at real time in 100 ms deltas. Speech
during a reply clears it and cancels it (turn_detected). Not the gateway's
logic: only the event shapes a client depends on."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import threading
from typing import Any, Iterator

import numpy as np
from websockets.asyncio.server import ServerConnection, serve

END_SILENCE_MS = 500
REPLY_MS = 2000
DELTA_MS = 100


class FakeSession:
    def __init__(self, ws: ServerConnection) -> None:
        self.ws, self.rate, self.out_rate = ws, 24000, 24000
        self.ids = itertools.count(1)
        self.samples = 0
        self.speaking = False
        self.silence_ms = 0.0
        self.start_ms = 0.0
        self.reply: asyncio.Task[None] | None = None
        self.reply_id: str | None = None

    async def emit(self, type_: str, **fields: Any) -> None:
        await self.ws.send(json.dumps({"type": type_, "event_id": f"ev_{next(self.ids)}", **fields}))

    async def run(self) -> None:
        await self.emit("session.created", session={"id": "sess_fake", "type": "realtime"})
        try:
            async for msg in self.ws:
                await self.handle(json.loads(msg))
        finally:
            if self.reply:
                self.reply.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.reply

    async def handle(self, ev: dict[str, Any]) -> None:
        typ = ev.get("type")
        if typ == "session.update":
            fmt = ev["session"].get("audio", {}).get("input", {}).get("format", {})
            self.rate = int(fmt.get("rate", self.rate))
            await self.emit("session.updated", session=ev["session"])
        elif typ == "input_audio_buffer.append":
            await self.on_audio(base64.b64decode(ev["audio"]))
        elif typ == "conversation.item.truncate":
            await self.emit("conversation.item.truncated", item_id=ev["item_id"],
                            content_index=0, audio_end_ms=min(int(ev["audio_end_ms"]), REPLY_MS))
        else:
            await self.emit("error", error={"type": "invalid_request_error", "code": "unknown_event",
                                            "message": f"unknown event type {typ!r}",
                                            "event_id": ev.get("event_id")})

    async def on_audio(self, pcm: bytes) -> None:
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
        ms = len(x) * 1000.0 / self.rate
        voiced = 10 * np.log10((x ** 2).mean() + 1e-12) > -40
        now_ms = self.samples * 1000.0 / self.rate
        self.samples += len(x)
        if voiced:
            self.silence_ms = 0.0
            if not self.speaking:
                self.speaking, self.start_ms = True, now_ms
                await self.emit("input_audio_buffer.speech_started", audio_start_ms=int(now_ms),
                                item_id="item_user")
                if self.reply is not None and not self.reply.done():
                    await self.emit("output_audio_buffer.cleared")
                    self.reply.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self.reply
                    await self.done(self.reply_id, "cancelled", "turn_detected")
        elif self.speaking:
            self.silence_ms += ms
            if self.silence_ms >= END_SILENCE_MS:
                self.speaking = False
                end = now_ms + ms - self.silence_ms
                await self.emit("input_audio_buffer.speech_stopped", audio_end_ms=int(end))
                await self.emit("input_audio_buffer.committed", item_id="item_user")
                await self.emit("conversation.item.input_audio_transcription.completed",
                                item_id="item_user", transcript="hello")
                self.reply_id = f"resp_{next(self.ids)}"
                self.reply = asyncio.create_task(self.speak(self.reply_id))

    async def speak(self, rid: str) -> None:
        await self.emit("response.created", response={"id": rid, "status": "in_progress"})
        n = self.out_rate * DELTA_MS // 1000
        tone = (0.2 * np.sin(np.arange(n) * 0.05) * 32767).astype("<i2").tobytes()
        await self.emit("output_audio_buffer.started", response_id=rid)
        for _ in range(REPLY_MS // DELTA_MS):
            await self.emit("response.output_audio.delta", response_id=rid, item_id=f"item_{rid}",
                            delta=base64.b64encode(tone).decode())
            await asyncio.sleep(DELTA_MS / 1000)
        await self.done(rid, "completed", None)

    async def done(self, rid: str | None, status: str, reason: str | None) -> None:
        timings = {"endpoint_ms": END_SILENCE_MS, "voice_to_voice_ms": END_SILENCE_MS + 20}
        await self.emit("response.done", response={
            "id": rid, "status": status,
            "status_details": {"type": status, "reason": reason} if reason else None,
            "metadata": {"timings": json.dumps(timings)}})


@contextlib.contextmanager
def fake_gateway() -> Iterator[str]:
    """Run the fake in a thread; yields its ws://127.0.0.1:PORT base URL."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        box["stop"] = asyncio.Event()

        async def handler(ws: ServerConnection) -> None:
            await FakeSession(ws).run()

        async with serve(handler, "127.0.0.1", 0) as server:
            box["port"] = server.sockets[0].getsockname()[1]
            ready.set()
            await box["stop"].wait()

    loop = asyncio.new_event_loop()
    th = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    th.start()
    assert ready.wait(10), "fake gateway did not start"
    try:
        yield f"ws://127.0.0.1:{box['port']}"
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        th.join(10)
        loop.close()

