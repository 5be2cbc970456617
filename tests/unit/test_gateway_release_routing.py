"""Invariant: a session's variant per service is decided once, at creation,
from its id's fixed hash bucket against the release weight the gateway last
read (or GATEWAY_CANARY_PERCENT without a release record), is stored with the
session, and is kept on resume whatever the weight is by then; raising the
weight never moves a session off the canary. Two things send a canary session
to stable: a withdrawn release (rolled back, aborted) and a canary with no
serving replica, which is counted and shown by /healthz without failing it.

Routing reads only memory: the release view and the canary probe are
refreshed in the background, never per session. (Pool tests are async only
because a gRPC aio channel needs a running loop to be created.)"""
from __future__ import annotations

import asyncio

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from common.clock import MonotonicClock
from release.state import Release, parse_all
from services.gateway.app import create_app
from services.gateway.backends.health import CanaryHealth
from services.gateway.backends.routing import BackendPool, in_canary
from services.gateway.fakes import FakeBackends, FakeProvider
from services.gateway.release_view import ReleaseView
from services.gateway.settings import GatewaySettings
from tests.procs import free_port

IDS = [f"sess_{i:05d}" for i in range(1000)]


def settings(**kw) -> GatewaySettings:
    return GatewaySettings(tts_addrs="s1:1,s2:1", tts_canary_addrs="c1:1", redis_url="", web_dir="/nonexistent",
                           **kw)


def pool(weight: float | None = None, state: str = "progressing", percent: float = 0.0,
         health: CanaryHealth | None = None) -> BackendPool:
    view = ReleaseView(percent)
    if weight is not None:
        view.apply({"tts": Release("tts", weight=weight, state=state)})
    return BackendPool(settings(canary_percent=percent), view, health)


def canary_share(p: BackendPool) -> float:
    return sum(p.for_session(i).variants["tts"] == "canary" for i in IDS) / len(IDS)


def fallbacks() -> float:
    return REGISTRY.get_sample_value("voice_gateway_canary_fallbacks_total", {
        "service": "unknown", "model": "unknown", "variant": "stable", "backend": "tts"}) or 0.0


async def test_release_weight_overrides_the_configured_percent():
    share = canary_share(pool(percent=10.0))
    assert share == sum(in_canary(i, "tts", 10.0) for i in IDS) / len(IDS)
    assert 0.07 < share < 0.13
    assert 0.20 < canary_share(pool(weight=25.0, percent=10.0)) < 0.30
    assert canary_share(pool(weight=0.0, state="idle", percent=10.0)) == 0.0
    # Other services have no record and no canary list: always stable.
    assert {pool(weight=50.0).for_session(i).variants["asr"] for i in IDS} == {"stable"}


async def test_raising_the_weight_only_adds_canary_sessions():
    p5, p25 = pool(weight=5.0), pool(weight=25.0)
    at5 = {i for i in IDS if p5.for_session(i).variants["tts"] == "canary"}
    at25 = {i for i in IDS if p25.for_session(i).variants["tts"] == "canary"}
    assert at5 and at5 < at25


async def test_a_resumed_session_keeps_its_variant_after_the_weight_changed():
    p = pool(weight=50.0)
    # On the canary at 50 %, but a new session with its id would not be at 5 %.
    sid = next(i for i in IDS if in_canary(i, "tts", 50.0) and not in_canary(i, "tts", 5.0))
    decided = p.for_session(sid).variants
    assert decided["tts"] == "canary"
    p.release.apply({"tts": Release("tts", weight=5.0, state="progressing")})
    assert p.for_session(sid, decided).variants["tts"] == "canary"
    assert p.for_session(sid, decided).tts.address == "c1:1"
    stable_sid = next(i for i in IDS if p.for_session(i).variants["tts"] == "stable")
    p.release.apply({"tts": Release("tts", weight=100.0, state="promoted")})
    assert p.for_session(stable_sid, {"tts": "stable"}).variants["tts"] == "stable"
    assert p.for_session(stable_sid).variants["tts"] == "canary"     # a new session now would


async def test_a_withdrawn_release_sends_even_resumed_canary_sessions_to_stable():
    p = pool(weight=50.0)
    sid = next(i for i in IDS if p.for_session(i).variants["tts"] == "canary")
    for state in ("rolled_back", "aborted"):
        p.release.apply({"tts": Release("tts", weight=0.0, state=state)})
        b = p.for_session(sid, {"tts": "canary"})
        assert b.variants["tts"] == "stable" and b.tts.address in ("s1:1", "s2:1")


async def test_a_canary_with_no_serving_replica_routes_to_stable_and_is_counted():
    health = CanaryHealth()
    p = pool(weight=100.0, health=health)
    assert p.for_session(IDS[0]).variants["tts"] == "canary"       # unprobed counts as serving
    health.status = {"c1:1": "UNAVAILABLE"}
    before = fallbacks()
    b = p.for_session(IDS[0])
    assert b.variants["tts"] == "stable" and b.tts.address in ("s1:1", "s2:1")
    assert p.for_session(IDS[1], {"tts": "canary"}).variants["tts"] == "stable"
    assert fallbacks() == before + 2
    health.status = {"c1:1": "SERVING"}
    assert p.for_session(IDS[0]).variants["tts"] == "canary"


async def test_release_view_keeps_the_last_weights_when_redis_cannot_be_read():
    view = ReleaseView(10.0, f"redis://127.0.0.1:{free_port()}/0")
    try:
        assert await view.refresh() is False and view.read_ok is False
        assert view.weight("tts") == 10.0                 # never read: the configured percent
        view.apply({"tts": Release("tts", weight=25.0, state="progressing")})
        assert await view.refresh() is False
        assert view.weight("tts") == 25.0                 # a blip moves no session
        assert view.status()["tts"] == {"weight": 25.0, "state": "progressing", "step": 0, "source": "redis"}
        assert view.status()["asr"]["source"] == "canary_percent"
    finally:
        await view.close()


def test_a_corrupt_record_falls_back_to_the_configured_percent():
    view = ReleaseView(10.0)
    view.apply(parse_all({b"tts": b"{not json", b"asr": Release("asr", weight=30.0).to_json().encode()}))
    assert view.weight("tts") == 10.0 and view.weight("asr") == 30.0


def test_release_metrics_mirror_the_view():
    view = ReleaseView(0.0)
    view.apply({"llm": Release("llm", weight=25.0, state="holding", decisions={"pass": 1, "inconclusive": 2},
                               last={"verdict": "inconclusive", "rule": "mann_whitney:v2v_ms", "at": 1700.0})})
    b = {"service": "unknown", "model": "unknown", "variant": "stable"}
    get = REGISTRY.get_sample_value
    assert get("voice_release_weight", b | {"backend": "llm"}) == 25.0
    assert get("voice_release_state", b | {"backend": "llm", "state": "holding"}) == 1.0
    assert get("voice_release_state", b | {"backend": "llm", "state": "progressing"}) == 0.0
    assert get("voice_release_state", b | {"backend": "asr", "state": "none"}) == 1.0
    assert get("voice_release_decisions_total", b | {"backend": "llm", "verdict": "inconclusive"}) == 2.0
    assert get("voice_release_last_decision_timestamp_seconds",
               b | {"backend": "llm", "verdict": "inconclusive", "rule": "mann_whitney:v2v_ms"}) == 1700.0


class _CanaryDown(FakeProvider):
    async def health(self):
        h = await super().health()
        h["tts"]["fake-tts-canary"] = "UNAVAILABLE"
        return h

    def canary_addresses(self):
        return {"tts": ["fake-tts-canary"]}


def test_healthz_reports_a_down_canary_without_failing():
    clock = MonotonicClock()
    provider = _CanaryDown(lambda sid: FakeBackends.create(clock))
    with TestClient(create_app(settings(), backends=provider)) as c:
        r = c.get("/healthz")
        assert r.status_code == 200, r.json()
        assert r.json()["canary_unavailable"] == {"tts": {"fake-tts-canary": "UNAVAILABLE"}}
        assert c.get("/readyz").status_code == 200


def test_healthz_still_fails_when_a_stable_address_is_down():
    clock = MonotonicClock()

    class StableDown(_CanaryDown):
        async def health(self):
            h = await super().health()
            h["tts"]["fake-tts"] = "UNAVAILABLE"
            return h

    with TestClient(create_app(settings(), backends=StableDown(lambda sid: FakeBackends.create(clock)))) as c:
        r = c.get("/healthz")
        assert r.status_code == 503 and r.json()["not_serving"] == {"tts": {"fake-tts": "UNAVAILABLE"}}


def test_session_record_keeps_its_variants_across_resume():
    clock = MonotonicClock()
    decided_seen = []

    def make(sid):
        b = FakeBackends.create(clock)
        b.variants = {**b.variants, "tts": "canary"}   # what routing gave this new session
        return b

    class Recording(FakeProvider):
        def for_session(self, session_id, decided=None):
            decided_seen.append(dict(decided or {}))
            return super().for_session(session_id, decided)

    provider = Recording(make)
    app = create_app(settings(), backends=provider)
    with TestClient(app) as c:
        with c.websocket_connect("/v1/realtime") as ws:
            sid = ws.receive_json()["session"]["id"]
        stored = asyncio.run(app.state.ctx.store.load(sid))
        assert stored.variants["tts"] == "canary"
        with c.websocket_connect(f"/v1/realtime?session_id={sid}") as ws:
            assert ws.receive_json()["session"]["id"] == sid
    assert decided_seen[0] == {} and decided_seen[1]["tts"] == "canary"


def test_a_session_resumed_by_session_update_is_served_by_its_own_variants(caplog):
    # Resuming on an open connection (session.update with the stored id) must
    # route the session as it was routed at creation, as a resume at connect
    # does: a canary session stays on the canary, its calls, samples and log
    # lines say so, not the variants this connection's new session was given.
    clock = MonotonicClock()
    given = iter(["canary", "stable"])

    def make(sid):
        b = FakeBackends.create(clock)
        b.variants = {**b.variants, "tts": next(given, "stable")}
        return b

    caplog.set_level("INFO")
    provider = FakeProvider(make)
    app = create_app(settings(), backends=provider)
    with TestClient(app) as c:
        with c.websocket_connect("/v1/realtime") as ws:
            sid = ws.receive_json()["session"]["id"]                  # routed to the tts canary
        with c.websocket_connect("/v1/realtime") as ws:
            other = ws.receive_json()["session"]["id"]                # a new session: stable
            assert provider.sessions[other].variants["tts"] == "stable"
            ws.send_json({"type": "session.update", "session": {"id": sid}})
            assert ws.receive_json()["type"] == "session.updated"
            ws.send_json({"type": "conversation.item.create",
                          "item": {"type": "message", "role": "user",
                                   "content": [{"type": "input_text", "text": "hello"}]}})
            ws.send_json({"type": "response.create", "response": {"output_modalities": ["text"]}})
            while ws.receive_json()["type"] != "response.done":
                pass
        stored = asyncio.run(app.state.ctx.store.load(sid))
    resumed = provider.sessions[sid]            # the backends routed for the resumed id
    assert resumed.variants["tts"] == "canary" and stored.variants["tts"] == "canary"
    assert resumed.llm.requests and not provider.sessions[other].llm.requests
    assert any("resumed by session.update" in r.getMessage() and "'tts': 'canary'" in r.getMessage()
               for r in caplog.records)


async def test_a_resume_while_the_user_speaks_is_refused_and_the_turn_goes_on():
    # The turn in progress (and any answer held for it) belongs to this
    # connection's session and its backends: a resume now would carry them
    # into the resumed session. Refused, naming why; the turn is answered.
    from common.clock import VirtualClock
    from services.gateway.scripted import ScriptedSession

    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=[(0.5, 2.0)], texts=["hello there"], replies=("Hi.",))
    async with ScriptedSession(b, clock, GatewaySettings(redis_url="")) as s:
        await s.run_audio(1.0)
        assert s.conv.turns.turn is not None
        await s.send({"type": "session.update", "event_id": "evt_r", "session": {"id": "sess_other"}})
        err = s.first("error").event["error"]
        assert err["code"] == "session_resume_not_allowed" and err["event_id"] == "evt_r", err
        assert "while the user is speaking" in err["message"]
        await s.run_audio(4.0)
        assert s.first("response.done").event["response"]["status"] == "completed"
