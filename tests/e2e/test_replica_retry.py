"""A replica that crashed, before its circuit opens: a gateway in front of two
LLM and two TTS replicas (the shared stack's, and a second real process of
each), the second ones killed with SIGKILL once the gateway is up. A session
whose preferred LLM and TTS replicas are the dead ones still gets its answer,
spoken, with no error: each call failed before its first token or audio
chunk and was retried once on the live replica (services/gateway/backends/
failover.py). Before, each such turn was an error to its user until five of
them had opened the dead replica's circuit.

The second gateway is a process of its own in front of the shared stack's
services and Redis (as in test_admission.py); the dead replicas are real
services that were serving, not addresses nobody ever listened on."""
from __future__ import annotations

import re
import urllib.request
from typing import Iterator

import pytest

from clients import events
from clients.realtime import RealtimeClient
from common.components import GATEWAY, by_name
from services.gateway.backends.routing import choose
from tests.e2e.talk import status_of
from tests.procs import ServiceProcess, running
from tests.stack import Stack

pytestmark = pytest.mark.slow
TURN_TIMEOUT = 90
RETRY_LINE = "failed before its first reply; retrying once on another replica"


@pytest.fixture(scope="module")
def dead_replicas(stack: Stack) -> Iterator[tuple[ServiceProcess, dict[str, list[str]]]]:
    extra = {n: ServiceProcess(by_name(n).module, by_name(n).env_prefix, stack.services[n].extra_env).spawn()
             for n in ("llm", "tts")}
    try:
        for p in extra.values():
            p.wait_ready()
        addrs = {n: [extra[n].address, stack.services[n].address] for n in extra}
        env = stack.gateway.extra_env | {f"GATEWAY_{n.upper()}_ADDRS": ",".join(a) for n, a in addrs.items()}
        with running(GATEWAY.module, GATEWAY.env_prefix, env, grpc_service=False) as gw:
            for p in extra.values():
                assert p.proc is not None
                p.proc.kill()               # a crash: no goodbye to the gateway's channels
                p.proc.wait(10)
            yield gw, addrs
    finally:
        for p in extra.values():
            p.stop()


def prefers_the_dead(session_id: str, addrs: dict[str, list[str]]) -> bool:
    """The gateway's own choice (routing.choose) puts both calls on the dead replicas first."""
    return all(choose(session_id, n, a, [], 0.0)[0] == a[0] for n, a in addrs.items())


async def test_a_crashed_replica_costs_no_answer(dead_replicas):
    gw, addrs = dead_replicas
    url = f"ws://{gw.address}/v1/realtime"
    for _ in range(60):                 # a quarter of the sessions prefer both dead replicas
        async with RealtimeClient(url) as rt:
            if not prefers_the_dead(rt.session["id"], addrs):
                continue
            await rt.update_session(events.session_config(turn_detection=None))
            await rt.create_user_text("Say hello to me.")
            mark = rt.mark()
            await rt.create_response()
            done = await rt.wait_for("response.done", since=mark, timeout=TURN_TIMEOUT)
            assert status_of(done)[0] == "completed", done
            assert rt.audio_of((done.get("response") or {})["id"]), "no reply audio"
            assert not rt.log.errors(since=mark), rt.log.errors(since=mark)
            break
    else:
        pytest.fail("no session preferred the dead replicas in 60 tries")
    log = gw.log_path.read_text(errors="replace")
    with urllib.request.urlopen(f"http://{gw.address}/metrics", timeout=10) as r:
        exported = r.read().decode()
    for name in ("llm", "tts"):
        assert f"{name}: {addrs[name][0]} {RETRY_LINE}" in log, f"no {name} retry in the gateway log"
        m = re.search(rf'voice_gateway_backend_retries_total{{[^}}]*backend="{name}"[^}}]*}} (\S+)', exported)
        assert m and float(m.group(1)) >= 1, f"no {name} retry counted"
