"""A gateway process killed outright (SIGKILL: no graceful close, no last
save) while a client talks to it. The client reconnects to *another* gateway
process on the same Redis with its session id (what a load balancer does when
a pod dies) and finds the whole conversation: the spoken turn's transcript
and spoken answer, the typed turn and its text answer, in order; its next
spoken turn is answered there. Issue #15 ("the gateway process killed and the
client reconnecting to another process with its session: history intact").

The kill comes 0.3 s after the client got the last ``response.done``: the
store writes behind (services/gateway/store.py), woken at once by each save,
so a crash within the few milliseconds of that write can still lose the last
turn; this test shows that 0.3 s is enough for it to be stored."""
from __future__ import annotations

import asyncio
from typing import Iterator

import pytest

from clients import events
from clients.realtime import RealtimeClient
from common.components import GATEWAY
from tests.e2e.talk import clip, status_of
from tests.procs import ServiceProcess
from tests.stack import Stack

pytestmark = pytest.mark.slow
RATE = 24000
TURN_TIMEOUT = 90


@pytest.fixture(scope="module")
def two_gateways(stack: Stack) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """A gateway of the test's own, which it kills, and the tier's gateway on
    the same services and Redis, where the client resumes."""
    first = ServiceProcess(GATEWAY.module, GATEWAY.env_prefix, dict(stack.gateway.extra_env), grpc_service=False)
    try:
        first.start(timeout=120)
        yield first, stack.gateway
    finally:
        first.stop()


def texts(item: dict) -> str:
    return " ".join((c.get("transcript") or c.get("text") or "") for c in item.get("content") or [])


async def spoken_turn(rt: RealtimeClient, pcm: bytes) -> dict:
    mark = rt.mark()
    mic = rt.mic or rt.start_microphone(RATE)
    await mic.say(pcm)
    done = await rt.wait_for("response.done", since=mark, timeout=TURN_TIMEOUT)
    assert status_of(done)[0] == "completed", done
    return done.get("response")


async def test_a_killed_gateways_client_resumes_on_another_with_its_history(two_gateways):
    first, other = two_gateways
    pcm, _, _ = clip("0890", RATE)
    pcm2, _, _ = clip("0920", RATE)
    async with RealtimeClient(f"ws://{first.address}/v1/realtime") as rt:
        sid = rt.session["id"]
        await rt.update_session(events.session_config(input_rate=RATE, output_rate=RATE))
        spoken = await spoken_turn(rt, pcm)
        heard = rt.log.find("conversation.item.input_audio_transcription.completed").get("transcript")
        mark = rt.mark()
        await rt.create_user_text("Say hello in one short sentence.")
        await rt.create_response(["text"])
        typed = (await rt.wait_for("response.done", since=mark, timeout=TURN_TIMEOUT)).get("response")
        assert typed["status"] == "completed", typed
        await asyncio.sleep(0.3)
        first.proc.kill()                           # SIGKILL: the process gets no say
        first.proc.wait(10)

    answer_ids = [spoken["output"][0]["id"], typed["output"][0]["id"]]
    async with RealtimeClient(f"ws://{other.address}/v1/realtime", session_id=sid) as rt2:
        assert rt2.session["id"] == sid
        items = rt2.session.get("conversation_items") or []
        by_id = {i["id"]: i for i in items}
        assert all(a in by_id for a in answer_ids), [i["id"] for i in items]
        roles = [i.get("role") for i in items if i.get("type") == "message"]
        assert roles == ["user", "assistant", "user", "assistant"], roles
        assert texts(items[0]).strip() == heard.strip()
        assert "hello" in texts(items[2]).lower()
        assert texts(by_id[answer_ids[0]]).strip() and texts(by_id[answer_ids[1]]).strip()
        # The conversation goes on there, with its history.
        await rt2.update_session(events.session_config(input_rate=RATE, output_rate=RATE))
        after = await spoken_turn(rt2, pcm2)
        assert after["output"][0]["id"] not in answer_ids
