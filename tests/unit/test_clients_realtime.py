"""The protocol client that benchmarks, e2e and load tests rely on measures
what it claims: the microphone delivers every sample of a clip, in order, in
whole frames, at the stream position it reports; waits return the first
matching event after a mark and fail loudly with what did arrive; a server
``error`` for a request surfaces as ServerError; the simulated speaker counts
only audio that has had time to play; the energy-based speech span finds the
speech, not the noise. Runs against a tiny in-process WebSocket server."""
from __future__ import annotations

import asyncio
import base64
import json
import threading

import numpy as np
import pytest
from websockets.asyncio.server import serve

from clients import events
from clients.player import Player
from clients.realtime import EventTimeout, RealtimeClient, ServerError
from clients.realtime_sync import SyncRealtimeClient
from clients.speech import voiced_span


class FakeServer:
    """Answers session.update, records appended audio, errors on 'bogus'."""

    def __init__(self) -> None:
        self.audio = bytearray()
        self.frame_sizes: list[int] = []

    async def handler(self, ws) -> None:
        await ws.send(json.dumps({"type": "session.created", "session": {"id": "sess_1"}}))
        async for msg in ws:
            ev = json.loads(msg)
            if ev["type"] == "session.update":
                await ws.send(json.dumps({"type": "session.updated", "session": ev["session"]}))
            elif ev["type"] == "input_audio_buffer.append":
                chunk = base64.b64decode(ev["audio"])
                self.audio += chunk
                self.frame_sizes.append(len(chunk))
            elif ev["type"] == "bogus":
                await ws.send(json.dumps({"type": "error", "error": {
                    "type": "invalid_request_error", "code": "unknown_event",
                    "message": "unknown event type 'bogus'", "event_id": ev["event_id"]}}))
            elif ev["type"] == "say":
                for i in range(3):
                    await ws.send(json.dumps({"type": "tick", "n": i}))


def tone(ms: int, rate: int, amp: float = 0.3) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (amp * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()


async def test_microphone_sends_whole_clip_at_reported_position():
    fake = FakeServer()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with RealtimeClient(f"ws://127.0.0.1:{port}") as rt:
            await rt.update_session(events.session_config(input_rate=16000))
            mic = rt.start_microphone(16000, frame_ms=20, speed=20.0)
            clip = tone(330, 16000)
            utt = await mic.say(clip)
            await asyncio.sleep(0.05)
            await mic.stop()
    assert set(fake.frame_sizes) == {640}, "every append is one whole 20 ms frame"
    start = utt.start_sample * 2
    assert bytes(fake.audio[start:start + len(clip)]) == clip
    assert not any(fake.audio[:start]), "only silence before the clip"
    assert utt.time_of(len(clip) // 2 - 1) > utt.time_of(0)


async def test_wait_for_mark_timeout_and_server_error():
    fake = FakeServer()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with RealtimeClient(f"ws://127.0.0.1:{port}") as rt:
            await rt.send({"type": "say"})
            first = await rt.wait_for("tick", timeout=5)
            assert first.get("n") == 0
            later = await rt.wait_for("tick", timeout=5, since=first.index + 1)
            assert later.get("n") == 1 and later.t >= first.t
            with pytest.raises(EventTimeout, match="tick"):
                await rt.wait_for("never.sent", timeout=0.2, since=first.index)
            with pytest.raises(ServerError, match="unknown_event"):
                await rt.request({"type": "bogus"}, "never.sent", timeout=5)


def test_player_counts_only_played_audio():
    p = Player(24000)
    one_s = 24000 * 2
    p.on_audio("item", one_s, t=10.0)          # plays 10.0–11.0
    p.on_audio("item", one_s, t=10.2)          # queued behind: 11.0–12.0
    assert p.played_ms("item", 10.5) == pytest.approx(500)
    assert p.played_ms("item", 11.5) == pytest.approx(1500)
    p.stop(11.25)                              # cleared: the rest is dropped
    assert p.played_ms("item", 20.0) == pytest.approx(1250)
    p.on_audio("item", one_s // 2, t=12.0)     # server resumes from 1250 ms
    assert p.played_ms("item", 12.5) == pytest.approx(1750)
    assert p.played_ms("other", 12.5) == 0


def test_voiced_span_finds_the_tone_in_noise():
    rate = 16000
    rng = np.random.default_rng(0)
    noise = lambda ms: (rng.normal(0, 0.002, rate * ms // 1000) * 32767).astype("<i2").tobytes()
    pcm = noise(400) + tone(1000, rate) + noise(600)
    span = voiced_span(pcm, rate)
    assert abs(span.start_ms - 400) <= 10
    assert abs(span.end_ms - 1400) <= 10


def test_sync_client_round_trip():
    fake = FakeServer()
    ready, stop = threading.Event(), None
    port_box: list[int] = []

    def run() -> None:
        async def main() -> None:
            nonlocal stop
            stop = asyncio.Event()
            async with serve(fake.handler, "127.0.0.1", 0) as server:
                port_box.append(server.sockets[0].getsockname()[1])
                ready.set()
                await stop.wait()
        loop = asyncio.new_event_loop()
        th_loop.append(loop)
        loop.run_until_complete(main())

    th_loop: list[asyncio.AbstractEventLoop] = []
    th = threading.Thread(target=run, daemon=True)
    th.start()
    assert ready.wait(10)
    try:
        with SyncRealtimeClient(f"ws://127.0.0.1:{port_box[0]}") as rt:
            rt.update_session(events.session_config(input_rate=16000))
            mic = rt.start_microphone(16000)
            utt = mic.play(tone(100, 16000))
            assert utt.done.wait(5)
            mic.stop()
            rt.send({"type": "bogus"})
            err = rt.wait_for("error", timeout=5)
            assert err.get("error")["code"] == "unknown_event"
        assert len(fake.audio) >= 3200
    finally:
        th_loop[0].call_soon_threadsafe(stop.set)
        th.join(5)
