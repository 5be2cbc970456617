"""Invariant: gateways on one Redis share their drill faults. A fault set on
any gateway is set on every other within a couple of refreshes, ended on any
is ended everywhere, and ends by itself everywhere at the same wall-clock
time whatever each gateway's own clock reads. With Redis unreachable a fault
is set on the gateway that was asked, the response says so, and no read of
the shared faults removes it."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from common.clock import MonotonicClock
from services.gateway.app import create_app
from services.gateway.fakes import FakeBackends, FakeProvider
from services.gateway.faults.shared import SharedFaults, from_record, to_record
from services.gateway.faults.table import Fault, FaultTable
from services.gateway.settings import GatewaySettings
from tests.procs import free_port
from tests.unit.test_gateway_store import private_redis, wait_for  # noqa: F401

ADMIN = "admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def _gateway(url: str) -> TestClient:
    clock = MonotonicClock()
    provider = FakeProvider(lambda sid: FakeBackends.create(clock))
    return TestClient(create_app(GatewaySettings(redis_url=url, admin_api_keys=ADMIN, web_dir="/nonexistent"),
                                 backends=provider))


def _services(c: TestClient) -> list[tuple[str, bool]]:
    return [(f["service"], f["shared"]) for f in c.get("/admin/faults", headers=AUTH).json()["faults"]]


def test_a_fault_set_on_one_gateway_breaks_the_fleet_and_ending_it_anywhere_ends_it(private_redis):
    with _gateway(private_redis) as a, _gateway(private_redis) as b:
        r = a.post("/admin/faults", json={"service": "tts", "kind": "error", "rate": 0.5, "duration_s": 60},
                   headers=AUTH)
        assert r.status_code == 200 and r.json()["scope"] == "fleet"
        assert _services(a) == [("tts", True)]
        assert wait_for(lambda: _services(b) == [("tts", True)], 5)
        seen = b.get("/admin/faults", headers=AUTH).json()["faults"][0]
        assert seen["kind"] == "error" and seen["rate"] == 0.5 and 55 < seen["remaining_s"] <= 60
        b.post("/admin/faults", json={"service": "llm", "kind": "hang", "duration_s": 60}, headers=AUTH)
        assert wait_for(lambda: sorted(_services(a)) == [("llm", True), ("tts", True)], 5)
        r = b.delete("/admin/faults?service=tts", headers=AUTH)
        assert r.json()["ended"] == ["tts"] and r.json()["scope"] == "fleet"
        assert wait_for(lambda: _services(a) == [("llm", True)], 5)
        a.delete("/admin/faults", headers=AUTH)
        assert wait_for(lambda: _services(b) == [], 5)


def test_with_redis_unreachable_the_fault_is_this_gateways_and_says_so():
    with _gateway(f"redis://127.0.0.1:{free_port()}/0") as c:
        r = c.post("/admin/faults", json={"service": "asr", "kind": "latency", "latency_ms": 500,
                                          "duration_s": 30}, headers=AUTH)
        assert r.status_code == 200
        assert r.json()["scope"] == "this gateway" and "Redis unreachable" in r.json()["why"]
        assert _services(c) == [("asr", False)]
        time.sleep(2.5)                            # failed reads of the shared faults change nothing
        assert _services(c) == [("asr", False)]


def test_a_stored_fault_ends_at_the_same_wall_time_on_every_clock():
    f = Fault("tts", "latency", until=1030.0, latency_ms=700, variant="canary")
    rec = to_record(f, clock_now=1000.0, wall_now=5_000_000.0)        # 30 s left, on gateway A
    there = from_record(rec, clock_now=20.0, wall_now=5_000_010.0)    # B's clock, 10 s later
    assert there == Fault("tts", "latency", until=40.0, latency_ms=700, variant="canary", shared=True)
    assert from_record(to_record(Fault("asr", "hang", until=5.0, id="f1"), 0.0, 0.0), 0.0, 0.0).id == "f1"
    assert from_record(rec, clock_now=0.0, wall_now=5_000_031.0) is None       # over
    assert from_record(b"not json", 0.0, 0.0) is None
    assert from_record('{"service": "tts"}', 0.0, 0.0) is None
    assert from_record(rec.replace('"tts"', '"ftp"'), 0.0, 5_000_000.0) is None


def test_sync_replaces_shared_faults_and_keeps_this_gateways_own():
    clock = Clock(0.0)
    t = FaultTable(clock)
    t.set(Fault("asr", "error", until=100.0))                          # Redis was down when set
    t.set(Fault("tts", "error", until=100.0, shared=True, id="a"))
    clock.t = 1.0
    t.sync([Fault("llm", "hang", until=50.0, shared=True, id="b")], read_at=1.0)   # tts ended elsewhere
    assert {f.service for f in t.current()} == {"asr", "llm"}
    t.sync([Fault("asr", "latency", until=60.0, latency_ms=9, shared=True, id="c")], read_at=1.0)
    assert {(f.service, f.kind) for f in t.current()} == {("asr", "latency")}   # the fleet's wins


def test_a_fault_read_again_is_the_same_fault_for_the_streams_under_it():
    """Each read of Redis rebuilds the faults; a stream under a hang tells its
    end by the fault's identity (calls.py), so the one held must stay (seen
    in CI: an ASR hang ended every second and answers went through)."""
    clock = Clock(0.0)
    t = FaultTable(clock)
    for i in range(5):
        clock.t = float(i)
        t.sync([Fault("asr", "hang", until=100.0 + i * 1e-6, shared=True, id="x")], read_at=clock.t)
        if i == 0:
            first = t.peek("asr")
        assert t.peek("asr") is first
    t.sync([Fault("asr", "hang", until=100.0, shared=True, id="y")], read_at=clock.t)   # set anew elsewhere
    assert t.peek("asr") is not first and t.peek("asr").id == "y"


def test_an_unreadable_record_is_skipped_and_a_failing_read_never_ends_the_sync():
    assert from_record("1", 0.0, 0.0) is None and from_record("[]", 0.0, 0.0) is None

    class Flaky:
        def __init__(self) -> None:
            self.reads = 0

        async def hgetall(self, key):
            self.reads += 1
            if self.reads == 1:
                return None      # refresh() then fails past its Redis guard (a bug, as run() must survive)
            return {b"tts": b"1"}

    import asyncio

    async def go() -> int:
        redis = Flaky()
        shared = SharedFaults(FaultTable(Clock(0.0)), redis, refresh_s=0.01)
        task = asyncio.create_task(shared.run())
        await asyncio.sleep(0.1)
        alive = not task.done()
        task.cancel()
        return redis.reads if alive else -1
    assert asyncio.run(go()) >= 3


def test_a_read_begun_before_a_change_here_does_not_undo_it():
    clock = Clock(10.0)
    t = FaultTable(clock)
    read_at = clock.now()                        # a read of Redis begins ...
    clock.t = 10.2
    t.set(Fault("tts", "error", until=100.0, shared=True, id="new"))   # ... a fault is set here ...
    t.clear("llm")
    t.sync([Fault("llm", "hang", until=100.0, shared=True, id="old")], read_at)   # ... it returns stale
    assert [(f.service, f.id) for f in t.current()] == [("tts", "new")]
    t.sync([Fault("tts", "error", until=100.0, shared=True, id="new")], read_at=10.3)   # the next read
    assert [(f.service, f.id) for f in t.current()] == [("tts", "new")]


@pytest.mark.parametrize("broken", ["hset", "hdel"])
async def test_publish_and_withdraw_say_why_they_failed(broken):
    class Broken:
        async def hset(self, *a):
            raise ConnectionError("refused")

        async def hdel(self, *a):
            raise ConnectionError("refused")

    shared = SharedFaults(FaultTable(Clock(0.0)), Broken())
    why = (await shared.publish(Fault("tts", "error", until=10.0)) if broken == "hset"
           else await shared.withdraw("tts"))
    assert why == "Redis unreachable (refused)"
