"""A blocking client of the Realtime protocol (``websocket-client``), for
Locust: with gevent's monkey-patching its reader and microphone threads become
greenlets, so hundreds of sessions fit in one worker. Same events, event log,
pacing rule and simulated speaker as the asyncio client in realtime.py."""
from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

import websocket  # websocket-client

from clients import events
from clients.eventlog import EventLog, Predicate, ServerEvent
from clients.player import Player


class SyncUtterance:
    def __init__(self, pcm: bytes, mic: "SyncMicrophone") -> None:
        self.pcm, self.mic = pcm, mic
        self.start_sample: int | None = None
        self.done = threading.Event()

    def time_of(self, offset: int) -> float:
        assert self.start_sample is not None, "utterance not started yet"
        return self.mic.sample_time(self.start_sample + offset)


class SyncMicrophone:
    """Real-time paced input: queued clips, silence in between (see realtime.Microphone)."""

    def __init__(self, client: "SyncRealtimeClient", rate: int, frame_ms: int = 20) -> None:
        self.client, self.rate = client, rate
        self.speed = 1.0
        # What else the microphone picks up (clients/echo.py), as in realtime.Microphone.
        self.mix = None
        self.frame_samples = rate * frame_ms // 1000
        self.samples_sent = 0
        self.t0 = 0.0
        self.max_lag_s = 0.0
        self._queue: list[SyncUtterance] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="microphone", daemon=True)

    def start(self) -> "SyncMicrophone":
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def play(self, pcm: bytes) -> SyncUtterance:
        u = SyncUtterance(pcm, self)
        with self._lock:
            self._queue.append(u)
        return u

    def sample_time(self, index: int) -> float:
        return self.t0 + index / self.rate

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        need = self.frame_samples * 2
        cur: SyncUtterance | None = None
        off = 0
        while not self._stop.is_set():
            out, finished = b"", []
            while len(out) < need:
                if cur is None:
                    with self._lock:
                        cur = self._queue.pop(0) if self._queue else None
                    if cur is None:
                        break
                    off = 0
                    cur.start_sample = self.samples_sent + len(out) // 2
                take = cur.pcm[off:off + need - len(out)]
                out += take
                off += len(take)
                if off >= len(cur.pcm):
                    finished.append(cur)
                    cur = None
            out += b"\x00" * (need - len(out))
            deadline = self.t0 + (self.samples_sent + self.frame_samples) / self.rate
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                self.max_lag_s = max(self.max_lag_s, -delay)
            if self.mix is not None:
                out = self.mix(self.samples_sent, out)
            try:
                self.client.send(events.append(out))
            except Exception:  # socket gone: the session is over, the reader reports why
                return
            self.samples_sent += self.frame_samples
            for u in finished:
                u.done.set()


class SyncRealtimeClient:
    def __init__(self, url: str, *, output_rate: int = events.DEFAULT_RATE,
                 timeout: float = 20, keep_audio: bool = False) -> None:
        self.url, self.timeout, self.keep_audio = url, timeout, keep_audio
        self.log = EventLog()
        self.player = Player(output_rate)
        self._cv = threading.Condition()
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._ws: websocket.WebSocket | None = None
        self._reader: threading.Thread | None = None
        self.closed: str | None = None
        self.mic: SyncMicrophone | None = None
        self.taps: list = []      # called with each server event and its arrival time (clients/echo.py)

    def connect(self) -> ServerEvent:
        self._ws = websocket.create_connection(self.url, timeout=self.timeout,
                                               enable_multithread=True)
        self._ws.settimeout(None)  # the reader blocks; waits have their own timeouts
        self._reader = threading.Thread(target=self._read, name="realtime-reader", daemon=True)
        self._reader.start()
        return self.wait_for("session.created", timeout=self.timeout)

    def __enter__(self) -> "SyncRealtimeClient":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.mic:
            self.mic.stop()
        if self._ws is not None:
            try:
                self._ws.close(timeout=2)
            except Exception:  # already broken: nothing left to close
                pass
        if self._reader is not None:
            self._reader.join(5)

    def _read(self) -> None:
        assert self._ws is not None
        try:
            while True:
                msg = self._ws.recv()
                if not msg:
                    self.closed = "closed by server"
                    break
                t = time.monotonic()
                data = json.loads(msg)
                for tap in self.taps:
                    tap(data, t)
                if data.get("type") == "response.output_audio.delta":
                    n = len(data.get("delta", "")) * 3 // 4
                    self.player.on_audio(str(data.get("item_id")), n, t)
                    if not self.keep_audio:
                        data = {**data, "delta": "", "bytes": n}
                elif data.get("type") == "output_audio_buffer.cleared":
                    self.player.stop(t)
                with self._cv:
                    self.log.add(data, t)
                    self._cv.notify_all()
        except Exception as exc:  # closed socket or protocol error: recorded, waiters woken
            self.closed = self.closed or f"connection lost: {exc!r}"
        finally:
            self.closed = self.closed or "reader stopped"
            with self._cv:
                self._cv.notify_all()

    def send(self, event: dict[str, Any]) -> str:
        assert self._ws is not None, "not connected"
        eid = event.get("event_id") or f"evt_{next(self._ids)}"
        payload = json.dumps({**event, "event_id": eid})
        with self._send_lock:
            self._ws.send(payload)
        return eid

    def mark(self) -> int:
        return len(self.log)

    def wait_for(self, type_: str | tuple[str, ...] | None = None, *, timeout: float = 30,
                 where: Predicate | None = None, since: int = 0) -> ServerEvent:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                ev = self.log.find(type_, where, since)
                if ev is not None:
                    return ev
                if self.closed:
                    raise ConnectionError(f"waiting for {type_}: {self.closed}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {type_} within {timeout} s; got {self.log.types(since)[-20:]}")
                self._cv.wait(min(left, 1.0))

    def update_session(self, session: dict[str, Any], timeout: float = 10) -> ServerEvent:
        since = self.mark()
        self.send(events.session_update(session))
        ev = self.wait_for(("session.updated", "error"), timeout=timeout, since=since)
        if ev.type == "error":
            raise RuntimeError(f"session.update rejected: {ev.get('error')}")
        return ev

    def start_microphone(self, rate: int, frame_ms: int = 20) -> SyncMicrophone:
        self.mic = SyncMicrophone(self, rate, frame_ms).start()
        return self.mic

    def truncate(self, item_id: str, audio_end_ms: float | None = None) -> str:
        if audio_end_ms is None:
            audio_end_ms = self.player.played_ms(item_id, time.monotonic())
        return self.send(events.truncate(item_id, int(audio_end_ms)))
