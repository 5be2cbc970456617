"""A scripted stand-in for the gateway, for fast browser tests of the page.

It serves web/ and speaks the Realtime events the real gateway sends, with
canned content: an energy detector on the page's microphone frames stands in
for VAD (so Chromium's fake capture file drives turns), a fixed transcript for
ASR, and a synthetic tone for speech, sent faster than real time as a real
server does. It records every client event so tests can check what the page
sent (frame sizes, truncates, session.update), and offers knobs to drop
connections, refuse them for a while, or send an error.

It runs in a thread of the test process (uvicorn + Starlette) so tests read its
records directly.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import math
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.procs import free_port

WEB = Path(__file__).resolve().parents[2] / "web"
RATE = 24000
SPEECH_RMS = 0.02          # frames louder than this count as speech (about -34 dBFS)
START_FRAMES = 3           # consecutive loud frames before speech_started
CHUNK_MS = 100             # audio delta size
SEND_SPEED = 4.0           # audio is sent this many times faster than real time
MS_PER_CHAR = 55           # synthetic speech length per character of reply text

DEFAULT_REPLY = ("Sure. Here is a fairly long answer, so that there is time to interrupt it. "
                 "It goes on for a few sentences about nothing in particular. "
                 "The weather is mild, the sky is clear, and the afternoon is calm. "
                 "That is all there is to say about it.")


def tone(ms: float, seed: int = 0) -> bytes:
    """Voice-like synthetic audio: a few harmonics with a syllable-rate envelope."""
    n = int(RATE * ms / 1000)
    t = (np.arange(n) + seed) / RATE
    f0 = 150.0
    x = sum(np.sin(2 * math.pi * f0 * k * t) / k for k in (1, 2, 3, 4))
    env = 0.55 + 0.45 * np.sin(2 * math.pi * 4.0 * t) ** 2
    y = 0.18 * x * env
    return (np.clip(y, -1, 1) * 32767).astype("<i2").tobytes()


@dataclasses.dataclass
class Session:
    id: str
    config: dict = dataclasses.field(default_factory=dict)
    history: list = dataclasses.field(default_factory=list)


class Conn:
    """One WebSocket connection: its VAD state and the response in flight."""

    def __init__(self, gw: "MockGateway", ws: WebSocket, session: Session) -> None:
        self.gw, self.ws, self.session = gw, ws, session
        self.loud = 0
        self.quiet_ms = 0.0
        self.in_speech = False
        self.audio_ms = 0.0
        self.item_id: str | None = None
        self.response_task: asyncio.Task | None = None
        self.unpaused = asyncio.Event()     # cleared while a reply is paused (possible false interruption)
        self.unpaused.set()
        self.playing_until = 0.0        # server's estimate of when the client stops playing
        self.send_lock = asyncio.Lock()

    async def send(self, event: dict) -> None:
        event.setdefault("event_id", f"evt_{uuid.uuid4().hex[:12]}")
        async with self.send_lock:
            await self.ws.send_text(json.dumps(event))
        self.gw.sent.append(event)

    # -- turn detection -------------------------------------------------------

    @property
    def turn_detection(self) -> dict | None:
        audio = self.session.config.get("audio", {})
        return audio.get("input", {}).get("turn_detection", {"type": "server_vad"})

    async def on_audio(self, pcm: bytes) -> None:
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        frame_ms = len(x) * 1000 / RATE
        self.audio_ms += frame_ms
        td = self.turn_detection
        if td is None:
            return  # push-to-talk: the client commits
        rms = float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
        if rms > SPEECH_RMS:
            self.loud += 1
            self.quiet_ms = 0.0
            if not self.in_speech and self.loud >= START_FRAMES:
                await self.speech_started(td)
        else:
            self.loud = 0
            if self.in_speech:
                self.quiet_ms += frame_ms
                if self.quiet_ms >= td.get("silence_duration_ms", 500):
                    await self.speech_stopped(td)

    async def speech_started(self, td: dict) -> None:
        self.in_speech = True
        self.item_id = f"item_{uuid.uuid4().hex[:10]}"
        await self.send({"type": "input_audio_buffer.speech_started", "item_id": self.item_id,
                         "audio_start_ms": int(self.audio_ms)})
        if td.get("interrupt_response", True) and self.busy():
            if self.gw.pause_on_speech:
                self.unpaused.clear()   # pause, as the gateway does until the barge-in is confirmed
                await self.send({"type": "output_audio_buffer.cleared", "response_id": self.gw.last_response_id})
            else:
                await self.cancel_response(cleared=True)

    async def speech_stopped(self, td: dict) -> None:
        self.in_speech = False
        await self.send({"type": "input_audio_buffer.speech_stopped", "item_id": self.item_id,
                         "audio_end_ms": int(self.audio_ms)})
        if not self.unpaused.is_set():
            # not words, just noise: a false interruption; the paused reply goes on
            self.unpaused.set()
            return
        await self.user_turn(self.item_id)
        if td.get("create_response", True):
            self.start_response()

    async def user_turn(self, item_id: str) -> None:
        await self.send({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": None})
        text = self.gw.next_transcript()
        words = text.split()
        so_far = ""
        for w in words:
            so_far = f"{so_far} {w}".strip()
            await self.send({"type": "conversation.item.input_audio_transcription.delta", "item_id": item_id,
                             "content_index": 0, "delta": w + " ", "transcript": so_far})
            await asyncio.sleep(0.03)
        await self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                         "content_index": 0, "transcript": text})
        self.session.history.append(("user", text))

    # -- responses ------------------------------------------------------------

    def busy(self) -> bool:
        running = self.response_task is not None and not self.response_task.done()
        return running or time.monotonic() < self.playing_until

    def start_response(self) -> None:
        if self.response_task and not self.response_task.done():
            self.response_task.cancel()
        self.response_task = asyncio.create_task(self.respond())
        self.gw.tasks.add(self.response_task)
        self.response_task.add_done_callback(self.gw.tasks.discard)

    async def cancel_response(self, cleared: bool) -> None:
        task = self.response_task
        if task and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.playing_until = 0.0
        if cleared:
            await self.send({"type": "output_audio_buffer.cleared", "response_id": self.gw.last_response_id})

    async def respond(self) -> None:
        rid = f"resp_{uuid.uuid4().hex[:10]}"
        iid = f"item_{uuid.uuid4().hex[:10]}"
        self.gw.last_response_id = rid
        status = "completed"
        await self.send({"type": "response.created", "response": {"id": rid, "object": "realtime.response",
                                                                  "status": "in_progress", "output": []}})
        try:
            if self.gw.fail_next:
                self.gw.fail_next = False
                status = "failed"
                return
            await asyncio.sleep(self.gw.think_s)
            await self.send({"type": "response.output_item.added", "response_id": rid, "output_index": 0,
                             "item": {"id": iid, "type": "message", "role": "assistant", "status": "in_progress",
                                      "content": []}})
            first_audio = None
            sent_ms = 0.0
            for clause in self.gw.reply_clauses():
                await self.send({"type": "response.output_audio_transcript.delta", "response_id": rid,
                                 "item_id": iid, "output_index": 0, "content_index": 0, "delta": clause})
                audio = tone(len(clause) * MS_PER_CHAR, seed=int(sent_ms * RATE / 1000))
                step = int(RATE * CHUNK_MS / 1000) * 2
                for off in range(0, len(audio), step):
                    await self.unpaused.wait()
                    chunk = audio[off:off + step]
                    if first_audio is None:
                        first_audio = time.monotonic()
                    await self.send({"type": "response.output_audio.delta", "response_id": rid, "item_id": iid,
                                     "output_index": 0, "content_index": 0,
                                     "delta": base64.b64encode(chunk).decode()})
                    sent_ms += len(chunk) / 2 * 1000 / RATE
                    self.playing_until = first_audio + sent_ms / 1000 + 0.3
                    await asyncio.sleep(CHUNK_MS / 1000 / SEND_SPEED)
            await self.send({"type": "response.output_audio.done", "response_id": rid, "item_id": iid,
                             "output_index": 0, "content_index": 0})
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        finally:
            await self.finish(rid, iid, status)

    async def finish(self, rid: str, iid: str, status: str) -> None:
        metadata = {"timings": json.dumps({
            "speech_end_ms": int(self.audio_ms), "endpoint_ms": 510, "asr_final_ms": 180,
            "retrieval_ms": 14, "llm_first_token_ms": 95, "tts_first_audio_ms": 240, "voice_to_voice_ms": 1040})}
        if self.session.config.get("retrieval", {}).get("enabled"):
            metadata["sources"] = json.dumps([
                {"source": "docs/weather.md", "title": "Weather basics", "score": 0.82},
                {"source": "docs/sky.md", "title": "Why the sky is blue", "score": 0.64}])
        response = {"id": rid, "object": "realtime.response", "status": status, "metadata": metadata,
                    "output": [{"id": iid, "type": "message", "role": "assistant"}]}
        if status == "failed":
            response["status_details"] = {"type": "failed", "error": {"type": "server_error",
                                                                       "message": "LLM service unavailable"}}
            response["output"] = []
        elif status == "cancelled":
            response["status_details"] = {"type": "cancelled", "reason": "turn_detected"}
        with contextlib.suppress(Exception):  # the socket may already be gone
            await self.send({"type": "response.done", "response": response})

    # -- client events --------------------------------------------------------

    async def handle(self, ev: dict) -> None:
        t = ev.get("type")
        if t == "input_audio_buffer.append":
            pcm = base64.b64decode(ev["audio"])
            self.gw.frames.append(len(pcm))
            await self.on_audio(pcm)
            return
        self.gw.received.append(ev)
        if t == "session.update":
            self.session.config = ev.get("session", {})
            await self.send({"type": "session.updated", "session": self.session.config | {"id": self.session.id}})
        elif t == "conversation.item.create":
            item = ev.get("item", {})
            text = " ".join(c.get("text", "") for c in item.get("content", []))
            self.session.history.append(("user", text))
            await self.send({"type": "conversation.item.added", "item": item | {"id": f"item_{uuid.uuid4().hex[:10]}"}})
        elif t == "response.create":
            self.start_response()
        elif t == "response.cancel":
            await self.cancel_response(cleared=False)
        elif t == "input_audio_buffer.commit":
            self.item_id = f"item_{uuid.uuid4().hex[:10]}"
            await self.user_turn(self.item_id)
        elif t == "input_audio_buffer.clear":
            await self.send({"type": "input_audio_buffer.cleared"})
        elif t == "conversation.item.truncate":
            self.gw.truncates.append(ev)
            await self.send({"type": "conversation.item.truncated", "item_id": ev["item_id"],
                             "content_index": ev.get("content_index", 0), "audio_end_ms": ev["audio_end_ms"]})


class MockGateway:
    def __init__(self) -> None:
        self.port = free_port()
        self.sessions: dict[str, Session] = {}
        self.conns: set[Conn] = set()
        self.tasks: set[asyncio.Task] = set()
        self.received: list[dict] = []     # client events except audio appends
        self.frames: list[int] = []        # byte size of every appended audio frame
        self.truncates: list[dict] = []
        self.sent: list[dict] = []
        self.connects: list[str | None] = []  # session_id asked for on each connection
        self.urls: list[str] = []             # the URL of each connection
        self.transcripts = ["what is the weather like today"]
        self.reply = DEFAULT_REPLY
        self.think_s = 0.2
        self.refuse_until = 0.0
        self.fail_next = False
        self.pause_on_speech = False   # True: speech pauses the reply and silence resumes it
        self.last_response_id: str | None = None
        self._n = 0
        self.loop: asyncio.AbstractEventLoop | None = None

        @contextlib.asynccontextmanager
        async def lifespan(_app):
            self.loop = asyncio.get_running_loop()  # test controls run their coroutines here
            yield

        app = Starlette(lifespan=lifespan, routes=[
            Route("/healthz", lambda r: PlainTextResponse("ok")),
            WebSocketRoute("/v1/realtime", self.realtime),
            Mount("/", StaticFiles(directory=WEB, html=True)),
        ])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", ws="websockets-sansio"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def next_transcript(self) -> str:
        text = self.transcripts[min(self._n, len(self.transcripts) - 1)]
        self._n += 1
        return text

    def reply_clauses(self) -> list[str]:
        parts = [p.strip() for p in self.reply.replace(". ", ".|").split("|") if p.strip()]
        return [p + " " for p in parts]

    async def realtime(self, ws: WebSocket) -> None:
        # As the gateway: the session to resume comes as the voice-session.<id>
        # subprotocol (the page), the X-Session-Id header, or ?session_id=.
        offered = ws.scope.get("subprotocols") or []
        asked = next((p[len("voice-session."):] for p in offered if p.startswith("voice-session.")),
                     ws.headers.get("x-session-id") or ws.query_params.get("session_id"))
        self.connects.append(asked)
        self.urls.append(str(ws.url))
        if time.monotonic() < self.refuse_until:
            await ws.close(code=1013)  # try again later
            return
        await ws.accept(subprotocol="realtime" if "realtime" in offered else None)
        session = self.sessions.get(asked) if asked else None
        if session is None:
            session = Session(id=f"sess_{uuid.uuid4().hex[:12]}")
            self.sessions[session.id] = session
        conn = Conn(self, ws, session)
        self.conns.add(conn)
        await conn.send({"type": "session.created", "session": {
            "id": session.id, "type": "realtime", "object": "realtime.session",
            "audio": {"output": {"voice": "en_US-joe-medium", "format": {"type": "audio/pcm", "rate": RATE}}}}})
        try:
            while True:
                await conn.handle(json.loads(await ws.receive_text()))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.conns.discard(conn)
            if conn.response_task and not conn.response_task.done():
                conn.response_task.cancel()

    # -- test controls (called from the test thread) ---------------------------

    def call(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def drop_all(self, refuse_s: float = 0.0) -> None:
        """Close every connection abruptly, and refuse new ones for refuse_s."""
        self.refuse_until = time.monotonic() + refuse_s

        async def _drop():
            for c in list(self.conns):
                with contextlib.suppress(Exception):
                    await c.ws.close(code=1012)
        self.call(_drop())

    def inject(self, event: dict) -> None:
        async def _send():
            for c in list(self.conns):
                await c.send(dict(event))
        self.call(_send())

    def events(self, type_: str) -> list[dict]:
        return [e for e in self.received if e.get("type") == type_]

    def start(self) -> "MockGateway":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("mock gateway did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
