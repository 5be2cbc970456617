"""Invariant: session history survives Redis outages of every shape. A Redis
restarted empty gets back every session the gateway still holds (not only
those that change again); the memory fallback is bounded in size and in
time (the retention), and a session it drops before Redis stored it is
counted as lost, never silently."""
from __future__ import annotations

import json
import subprocess

import pytest
import redis
from prometheus_client import REGISTRY

from services.gateway import store as store_mod
from services.gateway.defaults import default_config
from services.gateway.session import SessionState
from services.gateway.settings import GatewaySettings
from services.gateway.store import KEY, SessionStore
from tests.procs import free_port
from tests.unit.test_gateway_store import gateway, private_redis, redis_up, say, wait_for  # noqa: F401


def _redis_server(port: int) -> subprocess.Popen:
    return subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def lost(reason: str) -> float:
    return sum(s.value for m in REGISTRY.collect() for s in m.samples
               if s.name == "voice_gateway_sessions_lost_total" and s.labels.get("reason") == reason)


def test_a_redis_restarted_empty_gets_every_session_back(monkeypatch):
    monkeypatch.setattr(store_mod, "RUN_ID_CHECK_S", 0.0)
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = _redis_server(port)
    try:
        assert wait_for(lambda: redis_up(url), 10)
        c, _ = gateway(url)
        with c:
            with c.websocket_connect("/v1/realtime") as ws:
                quiet = ws.receive_json()["session"]["id"]
                say(ws, "remember the blue door")
            r = redis.Redis.from_url(url)
            assert wait_for(lambda: r.get(KEY.format(quiet)) is not None)
            server.terminate()
            server.wait(10)
            server = _redis_server(port)                 # back, and empty
            assert wait_for(lambda: redis_up(url), 10)
            assert r.get(KEY.format(quiet)) is None
            with c.websocket_connect("/v1/realtime") as ws:   # someone else talks: a write
                ws.receive_json()
                say(ws, "hello")
            # The quiet session never changed again, yet Redis has it back.
            assert wait_for(lambda: (raw := r.get(KEY.format(quiet))) is not None
                            and "remember the blue door" in raw.decode(), 10)
            assert len(json.loads(r.get(KEY.format(quiet)))["items"]) == 1
    finally:
        server.terminate()
        server.wait(10)


class Now:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _state(sid: str) -> SessionState:
    return SessionState(id=sid, config=default_config(GatewaySettings(redis_url="")))


async def test_the_memory_fallback_forgets_after_the_retention_and_counts_what_redis_never_had():
    now = Now()
    # Redis unreachable: every save stays pending, in memory only.
    s = SessionStore(f"redis://127.0.0.1:{free_port()}/0", ttl_s=100, now=now)
    before = lost("retention")
    s.save(_state("sess_a"))
    now.t = 50
    s.save(_state("sess_b"))
    assert (await s.load("sess_a")) is not None
    now.t = 101                                          # sess_a is past its retention
    s.save(_state("sess_c"))
    assert await s.load("sess_a") is None and await s.load("sess_b") is not None
    assert lost("retention") == before + 1 and s.pending == 2
    await s.close()


async def test_the_memory_fallback_is_bounded_in_size_and_counts_the_loss(monkeypatch):
    monkeypatch.setattr(store_mod, "MEMORY_SESSIONS", 2)
    s = SessionStore(f"redis://127.0.0.1:{free_port()}/0", ttl_s=100, now=Now())
    before = lost("memory_full")
    for sid in ("sess_1", "sess_2", "sess_3"):
        s.save(_state(sid))
    assert await s.load("sess_1") is None and s.pending == 2
    assert lost("memory_full") == before + 1
    # What a drill watches to know the write-back is done (drills/scenarios.py: redis-down).
    assert sum(x.value for m in REGISTRY.collect() for x in m.samples
               if x.name == "voice_gateway_store_pending_sessions") == 2
    await s.close()


async def test_without_redis_nothing_is_lost_only_forgotten():
    now = Now()
    s = SessionStore("", ttl_s=10, now=now)
    before = lost("retention")
    s.save(_state("sess_a"))
    now.t = 11
    s.save(_state("sess_b"))
    assert await s.load("sess_a") is None          # retention applies to memory-only stores too
    assert lost("retention") == before             # nothing was ever promised to Redis
