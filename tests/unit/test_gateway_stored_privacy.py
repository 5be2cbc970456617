"""What is stored of a conversation holds no card numbers, e-mails or phone
numbers (store_redacted, on by default), and a session's conversation can be erased at once by the credential that
created it (DELETE /v1/realtime/sessions/{id}): afterwards nothing of it is
left in Redis or in the gateway's memory, it cannot be resumed, and a
connection still on it is not stored again. Anyone else gets 404."""
from __future__ import annotations

import pytest
import redis
from fastapi.testclient import TestClient

from common.clock import MonotonicClock
from services.gateway.app import create_app
from services.gateway.fakes import FakeBackends, FakeProvider
from services.gateway.settings import GatewaySettings
from services.gateway.store import KEY
from tests.unit.test_gateway_store import private_redis, recv_until, say, wait_for  # noqa: F401

KEY_A, KEY_B = "key-a-0123456789abcdef", "key-b-0123456789abcdef"
A, B = ({"authorization": f"Bearer {k}"} for k in (KEY_A, KEY_B))


def gateway(url: str, **kw) -> TestClient:
    clock = MonotonicClock()
    provider = FakeProvider(lambda sid: FakeBackends.create(clock, replies=("Nice to meet you, Ada.",)))
    return TestClient(create_app(GatewaySettings(redis_url=url, web_dir="/nonexistent",
                                                 api_keys=f"{KEY_A},{KEY_B}", **kw), backends=provider))


SAID = "I am Ada, card 4111 1111 1111 1111, mail ada@example.com, phone +44 20 7946 0958."


def test_what_is_stored_is_redacted_unless_switched_off(private_redis):
    r = redis.Redis.from_url(private_redis)
    for redacted in (True, False):
        with gateway(private_redis, store_redacted=redacted) as c:
            with c.websocket_connect("/v1/realtime", headers=A) as ws:
                sid = ws.receive_json()["session"]["id"]
                say(ws, SAID)
                # The live conversation keeps the words (the LLM hears them this session).
                ws.send_json({"type": "response.create"})
                recv_until(ws, "response.done")
            assert wait_for(lambda: r.exists(KEY.format(sid)), 5)
            stored = r.get(KEY.format(sid)).decode()
            assert ("4111" in stored) is not redacted and ("ada@example.com" in stored) is not redacted
            if redacted:
                assert "[CARD]" in stored and "[EMAIL]" in stored and "[PHONE]" in stored and "I am Ada" in stored
                with c.websocket_connect(f"/v1/realtime?session_id={sid}", headers=A) as ws:
                    items = ws.receive_json()["session"]["conversation_items"]
                    assert "[CARD]" in items[0]["content"][0]["text"]


def test_erasing_a_session_leaves_nothing_in_redis(private_redis):
    r = redis.Redis.from_url(private_redis)
    with gateway(private_redis) as c:
        with c.websocket_connect("/v1/realtime", headers=A) as ws:
            sid = ws.receive_json()["session"]["id"]
            say(ws, "My name is Ada and my card is 4111 1111 1111 1111.")
            assert wait_for(lambda: r.exists(KEY.format(sid)), 5)
            # Not the owner, or not authenticated: refused, and nothing is erased.
            assert c.delete(f"/v1/realtime/sessions/{sid}", headers=B).status_code == 404
            assert c.delete(f"/v1/realtime/sessions/{sid}").status_code == 401
            assert r.exists(KEY.format(sid))
            resp = c.delete(f"/v1/realtime/sessions/{sid}", headers=A)
            assert resp.status_code == 200 and resp.json()["deleted"] is True
            assert r.keys("*") == []
            # The connection goes on, but what it says is no longer stored.
            say(ws, "Still here?")
        assert r.keys("*") == []
        with c.websocket_connect(f"/v1/realtime?session_id={sid}", headers=A) as ws:
            evs = recv_until(ws, "error")
            assert evs[0]["session"]["id"] != sid and evs[-1]["error"]["code"] == "session_not_found"
        assert c.delete(f"/v1/realtime/sessions/{sid}", headers=A).status_code == 404


def test_a_password_protected_redis_is_used_with_the_password_file(tmp_path):
    """Compose and Kubernetes run Redis with a password; the gateway reads it
    from a mounted secret file (never from a URL in its environment)."""
    import subprocess

    from tests.procs import free_port

    port, password = free_port(), "redis-pass-0123456789"
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--requirepass", password],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        r = redis.Redis.from_url(url, password=password)
        assert wait_for(lambda: _ping(r), 10)
        pw_file = tmp_path / "redis_password"
        pw_file.write_text(password + "\n")
        with gateway(url, redis_password_file=str(pw_file)) as c:
            with c.websocket_connect("/v1/realtime", headers=A) as ws:
                sid = ws.receive_json()["session"]["id"]
                say(ws, "hello")
            assert wait_for(lambda: r.exists(KEY.format(sid)), 5)
            assert c.app.state.ctx.store.healthy
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(url).get("x")      # and without it, Redis refuses
    finally:
        server.terminate()
        server.wait(10)


def _ping(r) -> bool:
    try:
        return r.ping()
    except redis.RedisError:
        return False
