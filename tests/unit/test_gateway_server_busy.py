"""Admission control through the real FastAPI app (fake backends).

Invariants: over the session limit a connection gets exactly one ``error``
event (code ``server_busy``, the limit in its message, ``retry_after_s``) and
close code 1013, and no session is created for it; the admitted session is
unaffected; a closed session frees its slot; a resumed session counts like a
new one; /readyz is 503 at the limit (and while draining) while /healthz stays
200; the limit gauge and the refused counter follow."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from common import metrics as common_metrics
from common.clock import MonotonicClock
from services.gateway import metrics
from services.gateway.app import create_app
from services.gateway.fakes import FakeBackends, FakeProvider
from services.gateway.settings import GatewaySettings

RETRY_S = 7.0


@pytest.fixture
def provider():
    clock = MonotonicClock()
    return FakeProvider(lambda sid: FakeBackends.create(clock, replies=("Hello there.",)))


@pytest.fixture
def app(provider):
    return create_app(GatewaySettings(redis_url="", web_dir="/nonexistent", max_sessions=1,
                                      busy_retry_after_s=RETRY_S), backends=provider)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def sample(name: str, **labels: str) -> float:
    v = common_metrics.REGISTRY.get_sample_value(name, metrics.base() | labels)
    return 0.0 if v is None else v


def refused(client: TestClient, path: str = "/v1/realtime") -> tuple[dict, WebSocketDisconnect]:
    """The one event a refused connection gets, and how it was closed."""
    with client.websocket_connect(path) as ws:
        event = ws.receive_json()
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    return event, closed.value


def wait_ready(client: TestClient, status: int, timeout: float = 5.0):
    """/readyz once it answers ``status`` (a closed session is released by the
    server task a moment after the client's close)."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/readyz")
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.01)


def test_second_session_gets_server_busy_with_a_retry_hint_and_1013(client, provider):
    refused_before = sample("voice_gateway_sessions_refused_total", reason="limit")
    errors_before = sample("voice_gateway_errors_total", code="server_busy")
    with client.websocket_connect("/v1/realtime") as first:
        assert first.receive_json()["type"] == "session.created"
        event, closed = refused(client)
        assert event["type"] == "error" and event["event_id"]
        err = event["error"]
        assert (err["code"], err["type"]) == ("server_busy", "server_error")
        assert "limit of 1 concurrent session" in err["message"] and "try again" in err["message"]
        assert err["retry_after_s"] == RETRY_S
        assert closed.code == 1013 and "retry in 7 s" in closed.reason
        assert len(provider.sessions) == 1                 # nothing was created for it

        # the admitted session is unaffected
        first.send_json({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "ping"}]}})
        while (ev := first.receive_json())["type"] != "conversation.item.added":
            assert ev["type"] != "error", ev
    assert sample("voice_gateway_sessions_refused_total", reason="limit") == refused_before + 1
    assert sample("voice_gateway_errors_total", code="server_busy") == errors_before + 1


def test_a_closed_session_frees_its_slot(client):
    with client.websocket_connect("/v1/realtime") as ws:
        assert ws.receive_json()["type"] == "session.created"
    assert wait_ready(client, 200).status_code == 200
    with client.websocket_connect("/v1/realtime") as ws:
        assert ws.receive_json()["type"] == "session.created"


def test_a_resumed_session_counts_like_any_other(client):
    with client.websocket_connect("/v1/realtime") as ws:
        sid = ws.receive_json()["session"]["id"]
    wait_ready(client, 200)
    with client.websocket_connect("/v1/realtime") as holder:
        assert holder.receive_json()["type"] == "session.created"
        event, closed = refused(client, f"/v1/realtime?session_id={sid}")
        assert event["error"]["code"] == "server_busy" and closed.code == 1013
    wait_ready(client, 200)
    with client.websocket_connect(f"/v1/realtime?session_id={sid}") as ws:
        created = ws.receive_json()
        assert created["type"] == "session.created" and created["session"]["id"] == sid


def test_readiness_flips_at_the_limit_while_health_stays_ok(client):
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert (r.json()["active_sessions"], r.json()["max_sessions"]) == (0, 1)
    with client.websocket_connect("/v1/realtime") as ws:
        assert ws.receive_json()["type"] == "session.created"
        r = client.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "full" and body["active_sessions"] == 1 and "server_busy" in body["detail"]
        assert client.get("/healthz").status_code == 200     # full is not broken
    assert wait_ready(client, 200).status_code == 200


def test_draining_refuses_new_sessions_and_is_not_ready(client, app):
    before = sample("voice_gateway_sessions_refused_total", reason="draining")
    app.state.ctx.admission.drain()
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "draining"
    event, closed = refused(client)
    assert event["error"]["code"] == "server_busy" and "shutting down" in event["error"]["message"]
    assert closed.code == 1013
    assert sample("voice_gateway_sessions_refused_total", reason="draining") == before + 1


def test_the_limit_is_a_gauge():
    create_app(GatewaySettings(redis_url="", web_dir="/nonexistent", max_sessions=3),
               backends=FakeProvider(lambda sid: None))
    assert sample("voice_gateway_session_limit") == 3


def test_zero_is_unlimited(provider):
    app = create_app(GatewaySettings(redis_url="", web_dir="/nonexistent", max_sessions=0), backends=provider)
    with TestClient(app) as client:
        with client.websocket_connect("/v1/realtime") as a, client.websocket_connect("/v1/realtime") as b:
            assert a.receive_json()["type"] == b.receive_json()["type"] == "session.created"
            assert client.get("/readyz").status_code == 200
