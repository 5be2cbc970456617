"""Releases on a real Redis, with the real CLI, routing pool and stores.

Invariants: a weight the CLI sets (start, promote, abort) reaches a running
gateway's routing within its refresh period, without a restart; a session
keeps the variant it was given across a resume on another gateway process
even after the weight changed, and leaves a withdrawn canary; a canary whose
replica stops serving loses its sessions to stable; turn samples the gateway's
session store writes are read back per variant by the judge, and the control
loop rolls a slow canary back to weight 0, which the CLI's event list shows.

The backends are gRPC health servers only (routing and its probe need no
model), so the test runs in seconds."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from common.clock import WallClock
from release.controller import Controller
from release.judge import JudgeConfig, judge
from release.samples import Sample
from release.store import RedisReleaseStore
from services.gateway.backends.provider import GrpcProvider
from services.gateway.backends.routing import in_canary
from services.gateway.session import SessionConfig, SessionState
from services.gateway.settings import GatewaySettings
from services.gateway.store import SessionStore
from tests.procs import free_port
from tests.stack import start_redis

ROOT = Path(__file__).resolve().parents[2]
IDS = [f"sess_{i:04d}" for i in range(400)]


@pytest.fixture
def redis_url():
    proc, url = start_redis()
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RELEASE_REDIS_URL": url, "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}"}
    return subprocess.run([sys.executable, "-m", "release", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)


async def health_server() -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    addr = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(addr)
    await server.start()
    return server, addr


async def until(pred, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        await asyncio.sleep(0.05)
    return False


def share(provider: GrpcProvider) -> float:
    return sum(provider.for_session(i).variants["tts"] == "canary" for i in IDS) / len(IDS)


async def test_cli_weights_reach_running_gateways_and_sessions_keep_their_variant(redis_url):
    stable, stable_addr = await health_server()
    canary, canary_addr = await health_server()
    settings = GatewaySettings(redis_url=redis_url, tts_addrs=stable_addr, tts_canary_addrs=canary_addr,
                               canary_percent=0.0, release_refresh_s=0.1)
    a, b = GrpcProvider(settings), GrpcProvider(settings)   # two gateway processes
    store_a, store_b = SessionStore(redis_url, 600), SessionStore(redis_url, 600)
    try:
        await a.start()
        await b.start()
        store_a.start()
        assert share(a) == 0.0                           # no release: GATEWAY_CANARY_PERCENT

        r = cli(redis_url, "start", "--service", "tts", "--steps", "50,100", "--interval", "600")
        assert r.returncode == 0, r.stderr
        assert await until(lambda: a.release.weight("tts") == 50 and b.release.weight("tts") == 50)
        assert 0.4 < share(a) < 0.6

        # A canary session on gateway A, stored; the weight then drops for new ones.
        sid = next(i for i in IDS if in_canary(i, "tts", 50.0) and not in_canary(i, "tts", 5.0))
        state = SessionState(id=sid, config=SessionConfig())
        state.variants = a.for_session(sid).variants
        assert state.variants["tts"] == "canary"
        store_a.save(state)
        assert await until(lambda: store_a.pending == 0)
        r = cli(redis_url, "abort", "--service", "tts")
        assert r.returncode == 0, r.stderr
        r = cli(redis_url, "start", "--service", "tts", "--steps", "5,100", "--interval", "600")
        assert r.returncode == 0, r.stderr
        assert await until(lambda: b.release.weight("tts") == 5 and not b.release.withdrawn("tts"))

        # Resumed on gateway B: the stored variant, though a new session with this id is stable now.
        loaded = await store_b.load(sid)
        assert loaded is not None and loaded.variants["tts"] == "canary"
        assert b.for_session(sid).variants["tts"] == "stable"
        resumed = b.for_session(sid, loaded.variants)
        assert resumed.variants["tts"] == "canary" and resumed.tts.address == canary_addr

        r = cli(redis_url, "promote", "--service", "tts")
        assert r.returncode == 0, r.stderr
        assert await until(lambda: b.release.weight("tts") == 100)
        assert share(b) == 1.0

        # The canary stops serving: sessions go to stable, /healthz's probe sees it.
        await canary.stop(None)
        assert await until(lambda: not b.canary_health.serving(canary_addr))
        assert share(b) == 0.0
        assert (await b.health())["tts"][canary_addr] != "SERVING"

        r = cli(redis_url, "abort", "--service", "tts")
        assert r.returncode == 0, r.stderr
        assert await until(lambda: a.release.withdrawn("tts"))
        assert a.for_session(sid, {"tts": "canary"}).variants["tts"] == "stable"
        assert "aborted weight=0%" in cli(redis_url, "status").stdout
    finally:
        for x in (store_a, store_b):
            await x.close()
        for p in (a, b):
            await p.close()
        await stable.stop(None)
        await canary.stop(None)


async def test_gateway_samples_are_judged_and_a_slow_canary_is_rolled_back(redis_url):
    r = cli(redis_url, "start", "--service", "tts", "--steps", "5,100", "--interval", "0")
    assert r.returncode == 0, r.stderr
    t0 = time.time()
    store = SessionStore(redis_url, 600)
    store.start()
    rnd = random.Random(7)
    try:
        for i in range(60):
            for canary in (False, True):
                store.add_sample(Sample(
                    ts=time.time(), canary=frozenset({"tts"}) if canary else frozenset(),
                    v2v_ms=700 * rnd.lognormvariate(0, 0.1),
                    tts_first_audio_ms=(260 if canary else 100) * rnd.lognormvariate(0, 0.1)))
        assert await until(lambda: not store.samples)
    finally:
        await store.close()

    releases = RedisReleaseStore(redis_url)
    try:
        samples = await releases.samples(t0 - 1, time.time() + 1)
        assert len(samples) == 120
        assert sum(s.variant("tts") == "canary" for s in samples) == 60
        v = judge("tts", samples, JudgeConfig(min_samples=30))
        assert v.verdict == "fail" and v.rule == "mann_whitney:tts_first_audio_ms"

        # Compare-and-set: a writer holding an older revision is refused.
        stale = (await releases.load_all())["tts"]
        assert await releases.save(dataclasses.replace(stale)) is True
        assert await releases.save(dataclasses.replace(stale, weight=77.0)) is False
        assert (await releases.load_all())["tts"].weight == 5.0

        events = await Controller(releases, WallClock(), JudgeConfig(min_samples=30)).tick()
        assert [e["event"] for e in events] == ["fail"]
        rel = (await releases.load_all())["tts"]
        assert (rel.state, rel.weight, rel.decisions["fail"]) == ("rolled_back", 0.0, 1)
    finally:
        await releases.close()

    listed = cli(redis_url, "events", "--service", "tts", "--json")
    assert listed.returncode == 0, listed.stderr
    last = json.loads(listed.stdout.splitlines()[-1])
    assert last["event"] == "fail" and last["rule"] == "mann_whitney:tts_first_audio_ms"
    assert last["counts"] == {"canary": 60, "stable": 60}
    assert "rolled_back 0%" in cli(redis_url, "events", "--service", "tts").stdout
