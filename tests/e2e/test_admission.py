"""Admission control on the real stack: a gateway limited to 2 sessions admits
two, refuses the third at connect (one ``error`` event with code
``server_busy`` and a ``retry_after_s`` hint, then close code 1013) and is
not ready (/readyz 503) while full, while the two admitted sessions still
complete a spoken turn each, at real time on the real models; once they end,
the gateway is ready again.

The limited gateway is a second gateway process in front of the shared
stack's speech services and Redis: only the gateway's settings differ, and no
second set of models is loaded."""
from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clients import events
from clients.realtime import RealtimeClient
from common.components import GATEWAY
from tests.e2e.talk import clip, status_of, wer
from tests.procs import ServiceProcess, running
from tests.stack import Stack

pytestmark = pytest.mark.slow
RATE = 24000
LIMIT = 2
RETRY_S = 3.0
TURN_TIMEOUT = 90       # two turns at once on a loaded 2-core machine


@pytest.fixture(scope="module")
def limited(stack: Stack) -> Iterator[ServiceProcess]:
    env = stack.gateway.extra_env | {"GATEWAY_MAX_SESSIONS": str(LIMIT),
                                     "GATEWAY_BUSY_RETRY_AFTER_S": str(RETRY_S)}
    with running(GATEWAY.module, GATEWAY.env_prefix, env, grpc_service=False) as gw:
        yield gw


def readyz(gw: ServiceProcess) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://{gw.address}/readyz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def refused_at_connect(url: str) -> tuple[dict, int, str]:
    """What a client over the limit sees: the one event, the close code and reason."""
    async with connect(url, proxy=None, open_timeout=20) as ws:
        event = json.loads(await asyncio.wait_for(ws.recv(), 20))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 20)
    return event, closed.value.rcvd.code, closed.value.rcvd.reason


async def spoken_turn(rt: RealtimeClient, name: str) -> tuple[str, str, dict]:
    """Say clip ``name`` at real time; (reference, final transcript, response.done)."""
    pcm, _, ref = clip(name, RATE)
    await rt.update_session(events.session_config(input_rate=RATE, output_rate=RATE))
    rt.start_microphone(RATE).play(pcm)
    final = await rt.wait_for("conversation.item.input_audio_transcription.completed", timeout=TURN_TIMEOUT)
    done = await rt.wait_for("response.done", timeout=TURN_TIMEOUT)
    return ref, final.get("transcript", ""), done


async def test_over_the_limit_is_refused_and_the_admitted_sessions_keep_talking(limited):
    url = f"ws://{limited.address}/v1/realtime"
    assert readyz(limited)[0] == 200
    async with RealtimeClient(url) as a, RealtimeClient(url) as b:
        status, body = readyz(limited)
        assert status == 503 and body["status"] == "full" and body["active_sessions"] == LIMIT, body

        event, code, reason = await refused_at_connect(url)
        assert event["type"] == "error", event
        err = event["error"]
        assert (err["code"], err["type"]) == ("server_busy", "server_error"), err
        assert f"limit of {LIMIT}" in err["message"] and err["retry_after_s"] == RETRY_S, err
        assert code == 1013, (code, reason)

        # the refusal left the admitted sessions alone: both complete a spoken turn
        results = await asyncio.gather(spoken_turn(a, "0890"), spoken_turn(b, "0880"))
        for rt, (ref, transcript, done) in zip((a, b), results):
            assert wer(ref, transcript) <= 0.25, f"heard {transcript!r} for {ref!r}"
            assert status_of(done)[0] == "completed", done
            assert rt.audio_of((done.get("response") or {})["id"]), "no reply audio"
            assert rt.closed is None, rt.closed

    deadline = time.monotonic() + 10
    while readyz(limited)[0] != 200:
        assert time.monotonic() < deadline, readyz(limited)
        await asyncio.sleep(0.1)
    async with RealtimeClient(url) as again:
        assert again.session.get("id"), "a freed slot admits a new session"
