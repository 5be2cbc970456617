"""A release drill on the real stack: the gateway's TTS canary pool is the
TTS service itself (so routing, labels and samples are exercised without a
second model), the weight is set with the CLI while the gateway runs.

Invariants: the gateway follows the CLI's weight without a restart (/healthz
shows it); a session created at 100 % is on the canary, its record says so,
its spoken turn leaves a release sample in Redis naming the canary with the
voice-to-voice time response.done reported, and its turn metrics carry
variant="canary"; after an abort the same session, resumed, is on stable and
its next turn's sample says so."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Iterator

import pytest
import redis

from clients import events
from clients.realtime import RealtimeClient
from common.components import GATEWAY
from release.samples import Sample
from release.state import SAMPLES_KEY
from services.gateway.store import KEY
from tests.e2e.talk import clip, status_of, timings
from tests.procs import ROOT, ServiceProcess
from tests.stack import Stack, start_redis

pytestmark = pytest.mark.slow
RATE = 24000
TURN_TIMEOUT = 90


@pytest.fixture(scope="module")
def canary_stack(stack: Stack) -> Iterator[Stack]:
    """The tier's speech services behind a gateway of this test's own, whose
    TTS canary pool is the TTS itself, on a Redis of its own: the release
    record, the samples and the sessions are this test's alone (every
    gateway writes a sample per turn, and a session of an earlier test may
    still be ending)."""
    redis_proc, redis_url = start_redis()
    env = dict(stack.gateway.extra_env) | {"GATEWAY_REDIS_URL": redis_url,
                                           "GATEWAY_TTS_CANARY_ADDRS": stack.services["tts"].address,
                                           "GATEWAY_RELEASE_REFRESH_S": "0.2"}
    gw = ServiceProcess(GATEWAY.module, GATEWAY.env_prefix, env, grpc_service=False)
    try:
        gw.start(timeout=120)
        yield dataclasses.replace(stack, gateway=gw, redis=redis_proc)
    finally:
        gw.stop()
        redis_proc.terminate()
        redis_proc.wait(10)


def cli(st: Stack, *args: str) -> None:
    env = {**os.environ, "RELEASE_REDIS_URL": st.gateway.extra_env["GATEWAY_REDIS_URL"],
           "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}"}
    r = subprocess.run([sys.executable, "-m", "release", *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def get(st: Stack, path: str) -> str:
    with urllib.request.urlopen(st.http_url + path, timeout=10) as resp:
        return resp.read().decode()


def wait_release(st: Stack, state: str, timeout: float = 10.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rel = json.loads(get(st, "/healthz"))["release"]["tts"]
        if rel["state"] == state:
            return rel
        time.sleep(0.1)
    raise AssertionError(f"gateway never saw the tts release {state}: {rel}")


def samples(st: Stack) -> list[Sample]:
    r = redis.Redis.from_url(st.gateway.extra_env["GATEWAY_REDIS_URL"])
    return [Sample.decode(f[b"d"]) for _, f in r.xrange(SAMPLES_KEY)]


def wait_samples(st: Stack, n: int, timeout: float = 10.0) -> list[Sample]:
    end = time.monotonic() + timeout
    while time.monotonic() < end and len(got := samples(st)) < n:
        time.sleep(0.1)
    return got


async def test_release_drill_on_the_real_stack(canary_stack):
    st = canary_stack
    cli(st, "start", "--service", "tts", "--steps", "50,100", "--interval", "600")
    assert wait_release(st, "progressing")["weight"] == 50
    cli(st, "promote", "--service", "tts")
    assert wait_release(st, "promoted")["weight"] == 100

    pcm, _, _ = clip("0890", RATE)
    async with RealtimeClient(st.ws_url) as rt:
        sid = rt.session["id"]
        await rt.update_session(events.session_config(input_rate=RATE, output_rate=RATE))
        rt.start_microphone(RATE).play(pcm)
        done = await rt.wait_for("response.done", timeout=TURN_TIMEOUT)
    assert status_of(done)[0] == "completed", done
    [s] = wait_samples(st, 1)
    assert s.canary == {"tts"} and not s.failed
    assert s.v2v_ms == timings(done)["voice_to_voice_ms"]
    stored = json.loads(redis.Redis.from_url(st.gateway.extra_env["GATEWAY_REDIS_URL"]).get(KEY.format(sid)))
    assert stored["variants"]["tts"] == "canary"
    body = get(st, "/metrics")
    assert any(line.startswith("voice_gateway_turns_total{") and 'variant="canary"' in line
               and 'outcome="completed"' in line and not line.endswith(" 0.0") for line in body.splitlines())
    assert any(line.startswith("voice_release_weight{") and 'backend="tts"' in line and line.endswith(" 100.0")
               for line in body.splitlines())

    cli(st, "abort", "--service", "tts")
    assert wait_release(st, "aborted")["weight"] == 0
    async with RealtimeClient(st.ws_url, session_id=sid) as rt:
        assert rt.session["id"] == sid
        await rt.create_user_text("Say hello.")
        await rt.send(events.response_create())
        done = await rt.wait_for("response.done", timeout=TURN_TIMEOUT)
    assert status_of(done)[0] == "completed", done
    got = wait_samples(st, 2)
    assert len(got) == 2 and got[-1].canary == frozenset()
