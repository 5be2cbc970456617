"""Invariant: a drill's fault does to the gateway's real gRPC calls what a
broken backend would (errors, resets mid-answer, hangs the deadlines must
catch, latency), at its rate, only while it lasts (it ends by itself), only
for an admin key (never when none is configured), and with no fault set a
call goes out untouched."""
from __future__ import annotations

import asyncio
import random
import time

import grpc
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from common.clock import MonotonicClock
from services.gateway.app import create_app
from services.gateway.backends.grpc_clients import GrpcAsr, GrpcLlm, GrpcRag
from services.gateway.backends.types import AsrParams, BackendError, ChatMessage, LlmUsage
from services.gateway.fakes import FakeBackends, FakeProvider
from services.gateway.faults.calls import inject
from services.gateway.faults.table import Fault, FaultRequestError, FaultTable, parse
from services.gateway.settings import GatewaySettings
from tests.unit.grpc_backends import scripted_server

ADMIN = "admin-key-0123456789"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        await asyncio.sleep(0)


# -- the table (pure) -------------------------------------------------------------------------
def test_every_fault_has_a_bounded_duration_and_valid_fields():
    f = parse({"service": "tts", "kind": "error", "rate": 0.2, "duration_s": 60}, 100.0, 900)
    assert (f.service, f.kind, f.rate, f.until) == ("tts", "error", 0.2, 160.0)
    for bad in ({"service": "tts", "kind": "error"},                          # no duration
                {"service": "tts", "kind": "error", "duration_s": 901},
                {"service": "gpu", "kind": "error", "duration_s": 5},
                {"service": "tts", "kind": "melt", "duration_s": 5},
                {"service": "tts", "kind": "latency", "duration_s": 5},        # latency without ms
                {"service": "tts", "kind": "error", "duration_s": 5, "rate": 1.5},
                {"service": "tts", "kind": "error", "duration_s": 5, "extra": 1}):
        with pytest.raises(FaultRequestError):
            parse(bad, 0.0, 900)


def test_a_fault_ends_by_itself_and_hits_calls_at_its_rate():
    clock = Clock()
    table = FaultTable(clock, random.Random(7))
    assert not table.active
    table.set(Fault("tts", "error", until=clock.t + 10, rate=0.2))
    hits = sum(table.pick("tts") is not None for _ in range(5000))
    assert 850 < hits < 1150                         # 20 % of 5000, within ~5 sigma
    assert table.pick("llm") is None
    clock.t += 10
    assert table.pick("tts") is None and not table.active and table.current() == []


def test_no_fault_set_means_the_call_goes_out_untouched():
    call = object()
    assert inject(None, "llm", call) is call
    assert inject(FaultTable(Clock()), "llm", call) is call


# -- the admin endpoint ---------------------------------------------------------------------
def _app(clock, admin_keys=ADMIN):
    provider = FakeProvider(lambda sid: FakeBackends.create(MonotonicClock()))
    return create_app(GatewaySettings(redis_url="", web_dir="/nonexistent", admin_api_keys=admin_keys),
                      backends=provider, clock=clock)


def test_admin_faults_are_refused_without_admin_keys_even_on_loopback():
    with TestClient(_app(Clock(), admin_keys="")) as c:
        r = c.post("/admin/faults", json={"service": "tts", "kind": "error", "duration_s": 5},
                   headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled"
        assert c.app.state.ctx.faults.current() == []


def test_admin_faults_set_list_expire_and_end():
    clock = Clock()
    with TestClient(_app(clock)) as c:
        body = {"service": "llm", "kind": "hang", "duration_s": 30}
        assert c.post("/admin/faults", json=body).status_code == 401
        assert c.post("/admin/faults", json=body, headers={"Authorization": "Bearer wrong-key-0123456789"}
                      ).status_code == 401
        auth = {"Authorization": f"Bearer {ADMIN}"}
        bad = c.post("/admin/faults", json={"service": "llm", "kind": "hang"}, headers=auth)
        assert bad.status_code == 400 and "duration_s" in bad.json()["error"]["message"]
        r = c.post("/admin/faults", json=body, headers=auth)
        assert r.status_code == 200 and r.json()["faults"][0]["remaining_s"] == 30
        c.post("/admin/faults", json={"service": "tts", "kind": "error", "rate": 0.2, "duration_s": 60},
               headers=auth)
        clock.t += 31                                # the LLM hang is over by itself
        assert [f["service"] for f in c.get("/admin/faults", headers=auth).json()["faults"]] == ["tts"]
        r = c.delete("/admin/faults?service=tts", headers=auth)
        assert r.json() == {"ended": ["tts"], "faults": [], "scope": "this gateway",
                            "why": "no Redis: faults are not shared"}
        assert not c.app.state.ctx.faults.active


def test_short_admin_keys_are_refused_at_start():
    with pytest.raises(ValueError, match="admin API key"):
        _app(Clock(), admin_keys="short")


# -- faults on real gRPC calls ----------------------------------------------------------------
def _table(service: str, kind: str, **kw) -> FaultTable:
    t = FaultTable(MonotonicClock())
    t.set(Fault(service, kind, until=time.monotonic() + 60, **kw))
    return t


async def _generate(addr, ch, table, idle=0.3) -> list[str]:
    llm = GrpcLlm("llm", addr, ch, 30.0, idle, table)
    return [t async for t in llm.generate([ChatMessage("user", "hi")], [], 10, "r", LlmUsage())]


def _injected(service: str, kind: str) -> float:
    return sum(s.value for m in REGISTRY.collect() for s in m.samples
               if s.name == "voice_gateway_faults_injected_total"
               and s.labels.get("backend") == service and s.labels.get("kind") == kind)


async def test_injected_error_reset_and_hang_fail_the_llm_call_naming_it():
    async with scripted_server() as (addr, modes):
        async with grpc.aio.insecure_channel(addr) as ch:
            before = _injected("llm", "error")
            with pytest.raises(BackendError, match="injected fault: error"):
                await _generate(addr, ch, _table("llm", "error"))
            assert _injected("llm", "error") == before + 1
            got: list[str] = []
            with pytest.raises(BackendError, match="connection reset"):
                async for t in GrpcLlm("llm", addr, ch, 30.0, 0.3, _table("llm", "reset")).generate(
                        [ChatMessage("user", "hi")], [], 10, "r", LlmUsage()):
                    got.append(t)
            assert got == ["Hello"]                    # the answer broke off mid-stream
            t0 = time.monotonic()
            with pytest.raises(BackendError, match="no token for 0.3 s"):
                await _generate(addr, ch, _table("llm", "hang"))   # caught by the idle deadline
            assert time.monotonic() - t0 < 1.5
            assert await _generate(addr, ch, _table("llm", "error", rate=0.0)) == ["Hello", " there."]


async def test_injected_latency_delays_the_first_token():
    async with scripted_server() as (addr, _):
        async with grpc.aio.insecure_channel(addr) as ch:
            t0 = time.monotonic()
            assert await _generate(addr, ch, _table("llm", "latency", latency_ms=400), idle=5) == ["Hello", " there."]
            assert time.monotonic() - t0 >= 0.4


async def test_an_injected_asr_hang_is_caught_when_a_final_is_owed():
    async with scripted_server() as (addr, _):
        async with grpc.aio.insecure_channel(addr) as ch:
            stream = await GrpcAsr("asr", addr, ch, 30.0, 0.3, _table("asr", "hang")).open(AsrParams("en"))
            reader = asyncio.create_task(_drain(stream))
            await stream.send(b"\0\0" * 1600)
            await asyncio.sleep(0.5)
            assert not reader.done()                  # nothing owed yet
            await stream.end_utterance()
            with pytest.raises(BackendError, match="asr .* no reply"):
                await asyncio.wait_for(reader, 2.0)
            await stream.close()


async def _drain(stream) -> list:
    return [r async for r in stream.results()]


async def test_an_injected_rag_hang_ends_at_the_calls_deadline():
    async with scripted_server() as (addr, modes):
        async with grpc.aio.insecure_channel(addr) as ch:
            with pytest.raises(BackendError, match="deadline_exceeded"):
                await GrpcRag("rag", addr, ch, 0.3, faults=_table("rag", "hang")).search("q", 3, 0.0)


async def test_a_long_lived_asr_stream_suffers_a_fault_set_after_it_opened():
    """A session's ASR stream lives for the whole session: a drill's fault
    must reach it (at its next message or write), not only streams opened later."""
    table = FaultTable(MonotonicClock())
    async with scripted_server() as (addr, _):
        async with grpc.aio.insecure_channel(addr) as ch:
            stream = await GrpcAsr("asr", addr, ch, 30.0, 5.0, table).open(AsrParams("en"))
            got: list = []
            reader = asyncio.create_task(_collect(stream, got))
            await stream.end_utterance()
            await _wait(lambda: len(got) == 1)
            table.set(Fault("asr", "latency", until=time.monotonic() + 60, latency_ms=300))
            t0 = time.monotonic()
            await stream.end_utterance()
            await _wait(lambda: len(got) == 2)
            assert time.monotonic() - t0 >= 0.3
            table.set(Fault("asr", "error", until=time.monotonic() + 60))
            with pytest.raises(BackendError, match="injected fault: error"):
                await stream.send(b"\0\0" * 160)
            table.clear()
            await asyncio.wait_for(reader, 2.0)     # the call was cancelled: the stream ended
            await stream.close()


async def _collect(stream, into: list) -> None:
    async for r in stream.results():
        into.append(r)


async def _wait(pred, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_an_injected_hang_ends_at_the_calls_own_deadline():
    """A hung call with a deadline shorter than the idle limit (the LLM
    prefill's 5 s) fails as DEADLINE_EXCEEDED, as a real hang would."""
    async with scripted_server() as (addr, _):
        async with grpc.aio.insecure_channel(addr) as ch:
            llm = GrpcLlm("llm", addr, ch, 0.5, 30.0, _table("llm", "hang"))
            t0 = time.monotonic()
            with pytest.raises(BackendError, match="deadline_exceeded"):
                await llm.prefill([ChatMessage("user", "hi")], "r")
            assert time.monotonic() - t0 < 2.0


def test_without_admin_keys_the_backend_calls_carry_no_fault_hook():
    """Zero cost in normal operation: no admin key, no fault can be set, so
    the gRPC clients and the store get no fault table to look at."""
    def pool_and_store(keys: str):
        app = create_app(GatewaySettings(redis_url="", web_dir="/nonexistent", admin_api_keys=keys))
        ctx = app.state.ctx
        return ctx.backends.pool.faults, ctx.store.faults
    assert pool_and_store("") == (None, None)
    pool, store = pool_and_store(ADMIN)
    assert isinstance(pool, FaultTable) and pool is store


async def test_a_stream_lost_on_a_write_reports_the_writes_failure():
    """The ASR reset on the audio write (asr-down drill): the error the client
    gets says why, not just 'stream ended'."""
    from services.gateway.streams import StreamKeeper

    class Stream:
        def __init__(self) -> None:
            self.closed = asyncio.Event()

        async def send(self, pcm: bytes) -> None:
            raise BackendError("asr", "a:1", "unavailable: injected fault: connection reset")

        async def results(self):
            await self.closed.wait()
            if False:
                yield

        async def close(self) -> None:
            self.closed.set()

    class Client:
        name, address = "asr", "a:1"

        async def ready(self) -> bool:
            return True

    downs: list[BackendError] = []
    opened: list[Stream] = []

    async def open_stream() -> Stream:
        opened.append(Stream())
        return opened[-1]

    async def on_item(_) -> None: ...

    keeper = StreamKeeper(Client(), open_stream, lambda s: s.results(), on_item, lambda s: None,
                          lambda exc, first: downs.append(exc), MonotonicClock())
    task = asyncio.create_task(keeper.run())
    await _wait(lambda: keeper.stream is not None)
    assert await keeper.send("send", b"\0\0") is False
    await _wait(lambda: bool(downs))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert "connection reset" in downs[0].message


# -- a fault scoped to one variant (the canary drill) ------------------------------------------
def test_a_variant_scoped_fault_hits_only_that_pool():
    f = parse({"service": "tts", "kind": "latency", "latency_ms": 900, "variant": "canary", "duration_s": 60},
              0.0, 900)
    assert f.variant == "canary" and f.wire(0.0)["variant"] == "canary"
    assert parse({"service": "tts", "kind": "error", "duration_s": 5}, 0.0, 900).wire(0.0)["variant"] == "all"
    for bad in ({"service": "tts", "kind": "error", "duration_s": 5, "variant": "blue"},
                {"service": "redis", "kind": "error", "duration_s": 5, "variant": "canary"}):
        with pytest.raises(FaultRequestError, match="variant"):
            parse(bad, 0.0, 900)
    clock = Clock()
    table = FaultTable(clock)
    table.set(Fault("tts", "error", until=clock.t + 10, variant="canary"))
    assert table.pick("tts", "canary") is not None
    assert table.pick("tts", "stable") is None and table.pick("tts") is None
    assert table.peek("tts", "stable") is None and table.peek("tts", "canary") is not None
    table.set(Fault("tts", "error", until=clock.t + 10))          # unscoped: both pools
    assert table.pick("tts", "stable") is not None and table.pick("tts", "canary") is not None


async def test_the_pool_gives_a_canary_sessions_clients_the_canary_scoped_fault():
    """One server stands for both pools (as in the canary drill): only the
    session routed to the canary suffers the fault."""
    from release.state import Release
    from services.gateway.backends.routing import BackendPool
    from services.gateway.release_view import ReleaseView

    async with scripted_server() as (addr, _):
        table = FaultTable(MonotonicClock())
        table.set(Fault("tts", "error", until=time.monotonic() + 60, variant="canary"))

        def pool(weight: float) -> BackendPool:
            view = ReleaseView(0.0)
            view.apply({"tts": Release("tts", weight=weight, state="progressing")})
            s = GatewaySettings(tts_addrs=addr, tts_canary_addrs=addr, redis_url="", web_dir="/nonexistent")
            return BackendPool(s, view, faults=table)

        async def speak(p: BackendPool) -> list:
            b = p.for_session("sess_1")
            return [x async for x in b.tts.synthesize("Hi.", "", 1.0)]

        p_stable, p_canary = pool(0.0), pool(100.0)
        try:
            assert p_stable.for_session("sess_1").variants["tts"] == "stable"
            assert await speak(p_stable)                       # stable: untouched
            assert p_canary.for_session("sess_1").variants["tts"] == "canary"
            with pytest.raises(BackendError, match="injected fault: error"):
                await speak(p_canary)
        finally:
            await p_stable.close()
            await p_canary.close()
