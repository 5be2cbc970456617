"""An asyncio client of the Realtime protocol (``websockets``), with a live
microphone that streams audio at real time and a log of every server event
with its monotonic arrival time.

    async with RealtimeClient(url) as rt:
        await rt.update_session(events.session_config(input_rate=16000))
        mic = rt.start_microphone(16000)          # silence until something is said
        utt = mic.play(pcm)                        # a clip, paced at real time
        done = await rt.wait_for("response.done", timeout=60)
        latency = rt.log.find("response.output_audio.delta").t - utt.time_of(span.last_sample)

A client of the protocol only: it imports nothing from services/."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import time
from typing import Any, Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from clients import events
from clients.eventlog import EventLog, Predicate, ServerEvent
from clients.player import Player

DEFAULT_FRAME_MS = 20


class EventTimeout(TimeoutError):
    """No matching event in time; the message lists what did arrive."""


class ServerError(RuntimeError):
    """The server answered a request with an ``error`` event."""

    def __init__(self, event: ServerEvent) -> None:
        self.event = event
        err = event.get("error") or {}
        super().__init__(f"{err.get('code')}: {err.get('message')}")


@dataclasses.dataclass
class Utterance:
    """A clip queued on the microphone; its samples' times are known once sent."""
    pcm: bytes
    mic: "Microphone"
    start_sample: int | None = None   # absolute index in the mic stream
    done: asyncio.Future[None] | None = None

    @property
    def n_samples(self) -> int:
        return len(self.pcm) // 2

    def time_of(self, offset: int) -> float:
        """When sample ``offset`` of this clip was spoken (monotonic seconds)."""
        assert self.start_sample is not None, "utterance not started yet"
        return self.mic.sample_time(self.start_sample + offset)

    def stream_ms(self, offset: int) -> float:
        """Position of sample ``offset`` in the server's input stream, in ms."""
        assert self.start_sample is not None, "utterance not started yet"
        return (self.start_sample + offset) * 1000.0 / self.mic.rate


class Microphone:
    """Streams the input audio like a live microphone: queued clips, and
    silence (or nothing, with ``silence=False``) in between, in frames of
    ``frame_ms`` paced at real time × ``speed``. Frame k leaves once its last
    sample has been "captured", so sample i is spoken at t0 + i/rate."""

    def __init__(self, client: "RealtimeClient", rate: int, frame_ms: int = DEFAULT_FRAME_MS,
                 speed: float = 1.0, silence: bool = True) -> None:
        self.client, self.rate, self.speed, self.silence = client, rate, speed, silence
        self.frame_samples = rate * frame_ms // 1000
        self.samples_sent = 0
        self.t0: float | None = None
        self.max_lag_s = 0.0       # how far sending ever fell behind the real-time schedule
        self._queue: list[Utterance] = []
        self._current: Utterance | None = None
        self._cur_off = 0
        self._finished: list[Utterance] = []   # clips whose last sample is in the frame being sent
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # What else the microphone picks up, added to each frame: f(first sample
        # index, frame) → frame (clients/echo.py: the assistant's voice from the speakers).
        self.mix: Callable[[int, bytes], bytes] | None = None

    def start(self) -> "Microphone":
        self._task = asyncio.create_task(self._run(), name="microphone")
        return self

    def play(self, pcm: bytes) -> Utterance:
        """Queue a clip (PCM16 at the mic's rate); returns at once."""
        if len(pcm) % 2:
            raise ValueError("PCM16 needs an even byte count")
        utt = Utterance(pcm, self, done=asyncio.get_running_loop().create_future())
        self._queue.append(utt)
        self._wake.set()
        return utt

    async def say(self, pcm: bytes) -> Utterance:
        """Play a clip and wait until its last frame has been sent."""
        utt = self.play(pcm)
        assert utt.done is not None
        await utt.done
        return utt

    def sample_time(self, index: int) -> float:
        assert self.t0 is not None, "microphone not started"
        return self.t0 + index / (self.rate * self.speed)

    @property
    def busy(self) -> bool:
        return self._current is not None or bool(self._queue)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await self._task
        self._task = None
        for u in ([self._current] if self._current else []) + self._queue:
            if u.done and not u.done.done():
                u.done.cancel()

    def _next_frame(self) -> bytes | None:
        out = b""
        need = self.frame_samples * 2
        while len(out) < need:
            if self._current is None:
                if not self._queue:
                    break
                self._current, self._cur_off = self._queue.pop(0), 0
                self._current.start_sample = self.samples_sent + len(out) // 2
            take = self._current.pcm[self._cur_off:self._cur_off + need - len(out)]
            out += take
            self._cur_off += len(take)
            if self._cur_off >= len(self._current.pcm):
                self._finished.append(self._current)
                self._current = None
        if len(out) < need:
            if not self.silence and not out:
                return None
            out += b"\x00" * (need - len(out))
        return out

    async def _run(self) -> None:
        self.t0 = time.monotonic()
        period = self.frame_samples / (self.rate * self.speed)
        while True:
            self._finished = []
            frame = self._next_frame()
            if frame is None:   # silence off and nothing to say: wait, and restart the clock
                self._wake.clear()
                await self._wake.wait()
                self.t0 = time.monotonic() - self.samples_sent * period / self.frame_samples
                continue
            deadline = self.t0 + (self.samples_sent + len(frame) // 2) / (self.rate * self.speed)
            delay = deadline - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.max_lag_s = max(self.max_lag_s, -delay)
            if self.mix is not None:
                frame = self.mix(self.samples_sent, frame)
            await self.client.send(events.append(frame))
            self.samples_sent += len(frame) // 2
            for u in self._finished:
                if u.done and not u.done.done():
                    u.done.set_result(None)


class RealtimeClient:
    """One Realtime session over a WebSocket."""

    def __init__(self, url: str, *, output_rate: int = events.DEFAULT_RATE,
                 max_size: int | None = 16 * 1024 * 1024, open_timeout: float = 20,
                 keep_audio: bool = True, session_id: str | None = None) -> None:
        """``session_id``: resume that session (sent as the X-Session-Id header,
        never in the URL)."""
        self.url = url
        self.session_id = session_id
        self.log = EventLog()
        self.player = Player(output_rate)
        self.keep_audio = keep_audio
        self._max_size, self._open_timeout = max_size, open_timeout
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self.closed: str | None = None        # why the connection ended, once it has
        self.mic: Microphone | None = None
        self.session: dict[str, Any] = {}
        # Called with each server event (audio included) and its arrival time,
        # before the log may drop the audio (clients/echo.py listens here).
        self.taps: list[Callable[[dict[str, Any], float], None]] = []

    # -- connection -----------------------------------------------------------------
    async def __aenter__(self) -> "RealtimeClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> ServerEvent:
        """Open the socket and wait for ``session.created``."""
        headers = {"X-Session-Id": self.session_id} if self.session_id else None
        self._ws = await connect(self.url, max_size=self._max_size, open_timeout=self._open_timeout,
                                 proxy=None, compression=None, ping_interval=None, additional_headers=headers)
        self._reader = asyncio.create_task(self._read(), name="realtime-reader")
        created = await self.wait_for("session.created", timeout=self._open_timeout)
        self.session = created.get("session") or {}
        return created

    async def close(self) -> None:
        if self.mic:
            await self.mic.stop()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for msg in self._ws:
                t = time.monotonic()
                try:
                    data = json.loads(msg)
                except ValueError:
                    data = {"type": "<non-json>", "raw": str(msg)[:200]}
                self._on_event(data, t)
                async with self._changed:
                    self._changed.notify_all()
            self.closed = f"closed by server: {self._ws.close_code} {self._ws.close_reason}"
        except ConnectionClosed as exc:
            self.closed = f"connection lost: {exc}"
        finally:
            self.closed = self.closed or "reader stopped"
            async with self._changed:
                self._changed.notify_all()

    def _on_event(self, data: dict[str, Any], t: float) -> None:
        typ = data.get("type")
        for tap in self.taps:
            tap(data, t)
        if typ == "response.output_audio.delta":
            n = len(data.get("delta", "")) * 3 // 4
            self.player.on_audio(str(data.get("item_id")), n, t)
            if not self.keep_audio:
                data = {**data, "delta": "", "bytes": n}
        elif typ == "output_audio_buffer.cleared":
            self.player.stop(t)
        elif typ in ("session.updated", "session.created"):
            self.session = data.get("session") or self.session
        self.log.add(data, t)

    # -- sending --------------------------------------------------------------------
    async def send(self, event: dict[str, Any]) -> str:
        """Send one client event; returns its event_id (assigned if absent)."""
        if self._ws is None:
            raise RuntimeError("not connected")
        event_id = event.get("event_id") or f"evt_{next(self._ids)}"
        await self._ws.send(json.dumps({**event, "event_id": event_id}))
        return event_id

    async def send_raw(self, data: str | bytes) -> None:
        """Send a message as is (for malformed-input tests)."""
        assert self._ws is not None
        await self._ws.send(data)

    def mark(self) -> int:
        """A position in the log; pass it as ``since`` to wait for later events."""
        return len(self.log)

    async def wait_for(self, type_: str | tuple[str, ...] | None = None, *, timeout: float = 30,
                       where: Predicate | None = None, since: int = 0) -> ServerEvent:
        """The first event at or after ``since`` matching type and predicate."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                ev = self.log.find(type_, where, since)
                if ev is not None:
                    return ev
                if self.closed:
                    raise ConnectionError(f"waiting for {type_}: {self.closed}; "
                                          f"got {self.log.types(since)[-30:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise EventTimeout(f"no {type_} within {timeout} s; since #{since} got "
                                       f"{self.log.types(since)[-40:]}")
                with contextlib.suppress(TimeoutError):
                    # Not wait_for: on Python 3.11 it can drop a cancel (gh-86296).
                    async with asyncio.timeout(left):
                        await self._changed.wait()

    async def request(self, event: dict[str, Any], reply: str | tuple[str, ...], *,
                      timeout: float = 30) -> ServerEvent:
        """Send an event and wait for its reply, raising ServerError if the
        server answers with an ``error`` for this event_id instead."""
        since = self.mark()
        eid = await self.send(event)
        ev = await self.wait_for(
            (reply, "error") if isinstance(reply, str) else (*reply, "error"), timeout=timeout,
            since=since,
            where=lambda e: e.type != "error" or (e.get("error") or {}).get("event_id") in (eid, None))
        if ev.type == "error":
            raise ServerError(ev)
        return ev

    async def error_for(self, event_id: str, *, since: int = 0, timeout: float = 10) -> ServerEvent:
        return await self.wait_for("error", timeout=timeout, since=since,
                                   where=lambda e: (e.get("error") or {}).get("event_id") == event_id)

    # -- protocol helpers -------------------------------------------------------------
    async def update_session(self, session: dict[str, Any], timeout: float = 10) -> ServerEvent:
        return await self.request(events.session_update(session), "session.updated", timeout=timeout)

    def start_microphone(self, rate: int, frame_ms: int = DEFAULT_FRAME_MS, speed: float = 1.0,
                         silence: bool = True) -> Microphone:
        if self.mic is not None:
            raise RuntimeError("microphone already running")
        self.mic = Microphone(self, rate, frame_ms, speed, silence).start()
        return self.mic

    async def append_audio(self, pcm: bytes, frame_ms: int, rate: int, speed: float | None = 1.0) -> None:
        """Send a clip in frames without a microphone; ``speed=None`` sends as fast as possible."""
        step = rate * frame_ms // 1000 * 2
        t0 = time.monotonic()
        for i in range(0, len(pcm), step):
            await self.send(events.append(pcm[i:i + step]))
            if speed:
                delay = t0 + (i + step) / 2 / (rate * speed) - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)

    async def commit(self) -> str:
        return await self.send(events.commit())

    async def create_user_text(self, text: str) -> str:
        return await self.send(events.user_text(text))

    async def create_response(self, output_modalities: list[str] | None = None) -> str:
        return await self.send(events.response_create(output_modalities))

    async def cancel_response(self, response_id: str | None = None) -> str:
        return await self.send(events.response_cancel(response_id))

    async def truncate(self, item_id: str, audio_end_ms: float | None = None) -> str:
        """Truncate an assistant item; by default to what the simulated speaker played."""
        if audio_end_ms is None:
            audio_end_ms = self.player.played_ms(item_id, time.monotonic())
        return await self.send(events.truncate(item_id, int(audio_end_ms)))

    # -- reading results ----------------------------------------------------------------
    def audio_of(self, response_id: str | None = None, since: int = 0) -> bytes:
        """The assistant audio received (for one response, or all since a mark)."""
        out = bytearray()
        for ev in self.log.all("response.output_audio.delta", since=since):
            if response_id is None or ev.get("response_id") == response_id:
                out += events.decode_audio(ev.data)
        return bytes(out)

    def transcript_of(self, response_id: str, since: int = 0) -> str:
        return "".join(e.get("delta", "") for e in self.log.all(
            "response.output_audio_transcript.delta", since=since,
            where=lambda e: e.get("response_id") == response_id))
