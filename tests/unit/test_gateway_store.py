"""Session state in Redis.

Invariants: a client reconnecting with its session id — to another gateway
process sharing Redis — continues the same conversation (same items, the
LLM sees the earlier turns), also when resuming through session.update; an
unknown id gets a clear error and a fresh session; when Redis is down,
sessions carry on from memory, each failure is counted, and the state is
written back once Redis returns."""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from common.clock import MonotonicClock
from services.gateway.app import create_app
from services.gateway.fakes import FakeBackends, FakeProvider
from services.gateway.settings import GatewaySettings
from services.gateway.store import KEY
from tests.procs import free_port

def redis_up(url: str) -> bool:
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return False


@pytest.fixture
def private_redis():
    """A Redis of the test's own on a free port (scripts/install.sh installs
    redis-server), so the test needs no system Redis and touches none."""
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed: run scripts/install.sh --dev")
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        assert wait_for(lambda: redis_up(url), 10), "private redis-server did not start"
        yield url
    finally:
        server.terminate()
        server.wait(10)


def gateway(url: str):
    clock = MonotonicClock()
    provider = FakeProvider(lambda sid: FakeBackends.create(clock, replies=("Nice to meet you, Ada.",)))
    app = create_app(GatewaySettings(redis_url=url, web_dir="/nonexistent"), backends=provider)
    return TestClient(app), provider


def recv_until(ws, type_: str) -> list[dict]:
    out = []
    for _ in range(500):
        out.append(ws.receive_json())
        if out[-1]["type"] == type_:
            return out
    raise AssertionError(type_)


def say(ws, text: str) -> None:
    ws.send_json({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
    recv_until(ws, "conversation.item.done")


def wait_for(pred, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def failures(op: str) -> float:
    return REGISTRY.get_sample_value("voice_gateway_redis_failures_total",
                                     {"service": "unknown", "model": "unknown", "variant": "stable",
                                      "op": op}) or 0.0


def test_reconnect_with_session_id_continues_on_another_gateway(private_redis):
    a, pa = gateway(private_redis)
    with a:
        with a.websocket_connect("/v1/realtime") as ws:
            sid = ws.receive_json()["session"]["id"]
            say(ws, "My name is Ada.")
            ws.send_json({"type": "response.create"})
            assert recv_until(ws, "response.done")[-1]["response"]["status"] == "completed"
        r = redis.Redis.from_url(private_redis)
        assert wait_for(lambda: (raw := r.get(KEY.format(sid))) and len(json.loads(raw)["items"]) == 2)
        assert 0 < r.ttl(KEY.format(sid)) <= 3600

    b, pb = gateway(private_redis)  # another gateway process, sharing only Redis
    with b:
        with b.websocket_connect(f"/v1/realtime?session_id={sid}") as ws:
            created = ws.receive_json()
            assert created["session"]["id"] == sid
            assert [i["role"] for i in created["session"]["conversation_items"]] == ["user", "assistant"]
            say(ws, "What is my name?")
            ws.send_json({"type": "response.create"})
            recv_until(ws, "response.done")
        history = [(m.role, m.content) for m in pb.sessions[sid].llm.requests[-1]]
        assert ("user", "My name is Ada.") in history
        assert ("assistant", "Nice to meet you, Ada.") in history
        assert history[-1] == ("user", "What is my name?")

        # Resuming through session.update on a fresh connection works too.
        with b.websocket_connect("/v1/realtime") as ws:
            ws.receive_json()
            ws.send_json({"type": "session.update", "session": {"id": sid}})
            assert recv_until(ws, "session.updated")[-1]["session"]["id"] == sid

        with b.websocket_connect("/v1/realtime?session_id=sess_doesnotexist") as ws:
            new = ws.receive_json()["session"]["id"]
            err = ws.receive_json()["error"]
            assert err["code"] == "session_not_found" and "sess_doesnotexist" in err["message"]
            assert new != "sess_doesnotexist"


@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server not installed")
def test_redis_down_sessions_go_on_and_are_written_back():
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    before = failures("write")
    c, _ = gateway(url)
    server = None
    try:
        with c:
            with c.websocket_connect("/v1/realtime") as ws:
                sid = ws.receive_json()["session"]["id"]
                say(ws, "remember the blue door")        # works from memory
                ws.send_json({"type": "response.create"})
                assert recv_until(ws, "response.done")[-1]["response"]["status"] == "completed"
                assert wait_for(lambda: failures("write") > before, 5)
                server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                           "--save", "", "--appendonly", "no"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                r = redis.Redis.from_url(url)
                assert wait_for(lambda: redis_up(url), 5)

                def written() -> bool:
                    raw = r.get(KEY.format(sid))
                    return bool(raw) and "remember the blue door" in raw.decode() and \
                        len(json.loads(raw)["items"]) == 2
                assert wait_for(written, 10), "state not written back after Redis returned"
                say(ws, "and the red key")               # and the session still works
    finally:
        if server is not None:
            server.terminate()
            server.wait(5)
