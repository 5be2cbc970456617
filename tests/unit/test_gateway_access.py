"""Who may connect (services/gateway/access.py) through the real app.

Invariants: on a keyless loopback gateway a browser page of a foreign origin
(or a DNS-rebinding page under a foreign host name) is refused with HTTP 403
at the upgrade, while non-browser local clients need nothing; a non-loopback
gateway refuses to start without keys; with keys, a missing or wrong key is
refused (401), a client secret works until it expires, and a session is
resumed only by the credential (key) that created it, never by its id alone."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from common.clock import MonotonicClock
from services.gateway.access import AccessPolicy, Denied, is_loopback
from services.gateway.app import create_app
from services.gateway.fakes import FakeBackends, FakeProvider
from services.gateway.settings import GatewaySettings
from tests.unit.test_gateway_protocol import recv_until, still_usable

KEY_A, KEY_B = "key-a-0123456789abcdef", "key-b-0123456789abcdef"
BASE = "http://127.0.0.1:8000"


def make_client(**kw) -> TestClient:
    clock = MonotonicClock()
    provider = FakeProvider(lambda sid: FakeBackends.create(clock, replies=("Hello there.",)))
    app = create_app(GatewaySettings(redis_url="", web_dir="/nonexistent", **kw), backends=provider)
    return TestClient(app, base_url=BASE)


def refused(client, url="/v1/realtime", **kw) -> WebSocketDenialResponse:
    with pytest.raises(WebSocketDenialResponse) as exc:
        with client.websocket_connect(url, **kw):
            pass
    return exc.value


def test_loopback_names():
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2", "app.localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "10.0.0.5", "evil.example", "", "localhost.evil.example"]))


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "gateway.example"])
def test_a_gateway_beyond_loopback_refuses_to_start_without_keys(host):
    with pytest.raises(ValueError, match="GATEWAY_API_KEYS"):
        make_client(host=host)
    make_client(host=host, allow_insecure=True)      # said explicitly: starts
    make_client(host=host, api_keys=KEY_A)


def test_short_keys_are_refused_at_start():
    with pytest.raises(ValueError, match="16 characters"):
        AccessPolicy(bind_host="0.0.0.0", api_keys=["short"])


def test_loopback_without_keys_admits_local_clients_and_its_own_page_only():
    with make_client() as c:
        with c.websocket_connect("/v1/realtime") as ws:              # the openai package, curl: no Origin
            assert ws.receive_json()["type"] == "session.created"
        page = {"origin": BASE, "host": "127.0.0.1:8000"}                # the gateway's own page
        with c.websocket_connect("/v1/realtime", headers=page) as ws:
            assert ws.receive_json()["type"] == "session.created"
        for origin in ("https://evil.example", "http://127.0.0.1:9999", "null"):
            r = refused(c, headers={"origin": origin, "host": "127.0.0.1:8000"})
            assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"


def test_a_dns_rebinding_page_is_refused():
    # evil.example resolves to 127.0.0.1: the page is "its own origin" to the browser.
    with make_client() as c:
        r = refused(c, headers={"origin": "http://evil.example:8000", "host": "evil.example:8000"})
        assert r.status_code == 403


def test_allowed_origins_are_the_whole_list():
    with make_client(allowed_origins="https://app.example") as c:
        with c.websocket_connect("/v1/realtime", headers={"origin": "https://app.example"}) as ws:
            assert ws.receive_json()["type"] == "session.created"
        assert refused(c, headers={"origin": BASE, "host": "127.0.0.1:8000"}).status_code == 403


def test_with_keys_a_missing_or_wrong_key_is_refused():
    with make_client(api_keys=KEY_A) as c:
        r = refused(c)
        assert (r.status_code, r.json()["error"]["code"]) == (401, "missing_api_key")
        r = refused(c, headers={"authorization": "Bearer not-the-key-0123456789"})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_api_key")
        assert KEY_A not in r.text
        with c.websocket_connect("/v1/realtime", headers={"authorization": f"Bearer {KEY_A}"}) as ws:
            assert ws.receive_json()["type"] == "session.created"


def test_the_browser_subprotocol_carries_the_key_and_is_never_echoed():
    with make_client(api_keys=KEY_A, host="0.0.0.0") as c:
        with c.websocket_connect("/v1/realtime", subprotocols=["realtime", f"openai-insecure-api-key.{KEY_A}"],
                                 headers={"origin": "https://any.example"}) as ws:
            assert ws.accepted_subprotocol == "realtime"
            assert ws.receive_json()["type"] == "session.created"
        r = refused(c, subprotocols=["realtime", "openai-insecure-api-key.wrong-key-0123456789"])
        assert r.status_code == 401


def test_client_secrets_are_minted_with_a_key_and_expire():
    with make_client(api_keys=KEY_A, client_secret_ttl_s=60) as c:
        assert c.post("/v1/realtime/client_secrets").status_code == 401
        r = c.post("/v1/realtime/client_secrets", headers={"authorization": f"Bearer {KEY_A}"})
        assert r.status_code == 200
        secret, expires_at = r.json()["value"], r.json()["expires_at"]
        assert secret.startswith("ek_") and KEY_A not in secret
        # A secret cannot mint secrets.
        assert c.post("/v1/realtime/client_secrets", headers={"authorization": f"Bearer {secret}"}).status_code == 403
        with c.websocket_connect("/v1/realtime", subprotocols=["realtime", f"openai-insecure-api-key.{secret}"]) as ws:
            assert ws.receive_json()["type"] == "session.created"
        forged = secret[:-4] + ("0000" if not secret.endswith("0000") else "1111")
        assert refused(c, headers={"authorization": f"Bearer {forged}"}).json()["error"]["code"] == \
            "invalid_client_secret"
        policy = c.app.state.ctx.access
        policy.wall = lambda: expires_at          # the injected wall clock reaches the expiry
        r = refused(c, headers={"authorization": f"Bearer {secret}"})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "client_secret_expired")


def test_client_secret_lifetime_can_be_asked_for_within_bounds():
    with make_client(api_keys=KEY_A) as c:
        auth = {"authorization": f"Bearer {KEY_A}"}
        now = c.app.state.ctx.access.wall()
        r = c.post("/v1/realtime/client_secrets", headers=auth, json={"expires_after": {"anchor": "created_at",
                                                                                        "seconds": 30}})
        assert 29 <= r.json()["expires_at"] - now <= 31
        r = c.post("/v1/realtime/client_secrets", headers=auth, json={"expires_after": {"seconds": 10 ** 6}})
        assert r.status_code == 400 and "expires_after.seconds" in r.json()["error"]["message"]


def talk(ws) -> str:
    sid = ws.receive_json()["session"]["id"]
    still_usable(ws)    # one item: "ping"
    return sid


def test_a_session_is_resumed_only_by_the_key_that_created_it():
    with make_client(api_keys=f"{KEY_A},{KEY_B}") as c:
        a, b = ({"authorization": f"Bearer {k}"} for k in (KEY_A, KEY_B))
        with c.websocket_connect("/v1/realtime", headers=a) as ws:
            sid = talk(ws)
        # Another key, by URL and by session.update: refused, nothing of A's shown.
        with c.websocket_connect(f"/v1/realtime?session_id={sid}", headers=b) as ws:
            evs = recv_until(ws, "error")
            assert evs[0]["session"]["id"] != sid and "conversation_items" not in evs[0]["session"]
            assert evs[-1]["error"]["code"] == "session_not_found"
            ws.send_json({"type": "session.update", "event_id": "u1", "session": {"id": sid}})
            err = recv_until(ws, "error")[-1]["error"]
            assert (err["code"], err["event_id"]) == ("session_not_found", "u1")
        # The creator resumes it, and so does a client secret minted with its key.
        with c.websocket_connect(f"/v1/realtime?session_id={sid}", headers=a) as ws:
            created = ws.receive_json()["session"]
            assert created["id"] == sid and created["conversation_items"][0]["content"][0]["text"] == "ping"
        secret = c.post("/v1/realtime/client_secrets", headers=a).json()["value"]
        with c.websocket_connect(f"/v1/realtime?session_id={sid}",
                                 headers={"authorization": f"Bearer {secret}"}) as ws:
            assert ws.receive_json()["session"]["id"] == sid


def test_a_session_is_resumed_by_header_or_subprotocol_without_its_id_in_the_url():
    """Browsers cannot set headers: they offer ``voice-session.<id>`` next to
    "realtime" (the one echoed back); other clients send X-Session-Id. Both
    resume only their own credential's session, like the older query form."""
    with make_client(api_keys=f"{KEY_A},{KEY_B}") as c:
        a = {"authorization": f"Bearer {KEY_A}"}
        with c.websocket_connect("/v1/realtime", headers=a) as ws:
            sid = talk(ws)
        with c.websocket_connect("/v1/realtime", headers={**a, "x-session-id": sid}) as ws:
            assert ws.receive_json()["session"]["id"] == sid
        with c.websocket_connect("/v1/realtime", subprotocols=["realtime", f"openai-insecure-api-key.{KEY_A}",
                                                               f"voice-session.{sid}"]) as ws:
            assert ws.accepted_subprotocol == "realtime"
            assert ws.receive_json()["session"]["id"] == sid
        with c.websocket_connect("/v1/realtime", headers={"authorization": f"Bearer {KEY_B}",
                                                          "x-session-id": sid}) as ws:
            evs = recv_until(ws, "error")
            assert evs[0]["session"]["id"] != sid
            assert (evs[-1]["error"]["code"], evs[-1]["error"]["param"]) == ("session_not_found", "X-Session-Id")


def test_denial_is_a_policy_error_not_a_crash():
    p = AccessPolicy(bind_host="127.0.0.1", api_keys=[KEY_A])
    with pytest.raises(Denied) as exc:
        p.check({"authorization": "Basic abc"})
    assert exc.value.code == "missing_api_key"
