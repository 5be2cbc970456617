"""A backend process killed (SIGKILL: a crash, no goodbye) mid-turn, on real
services: the LLM while it writes the answer, the TTS while it speaks it,
the ASR and the VAD while the user speaks. Unlike test_faults.py (faults injected by the gateway,
the services up), the process is really gone, and then really back: a new
process on the same port, its model loaded again.

A gateway of its own stands in front of a killable process of the service
under test and the shared stack's other services and Redis (as in
test_replica_retry.py), so the shared stack is never touched.

Invariants: the client gets an ``error`` naming the service; a response
under way ends ``failed``; the answer's unspoken part is not in the history (what is
kept is a prefix of what the client was sent); the session goes on, and once
the process is back the next turn is answered on the same connection,
without the client reconnecting."""
from __future__ import annotations

import asyncio
from typing import Iterator

import pytest

from clients import events
from clients.realtime import RealtimeClient
from common.components import GATEWAY, by_name
from tests.e2e.talk import LONG_REPLY_INSTRUCTIONS, clip, status_of, turn_story
from tests.procs import ServiceProcess, running
from tests.stack import Stack

pytestmark = pytest.mark.slow
TURN_TIMEOUT = 90
RATE = 24000
TRIES = 3               # the 135M model sometimes ends its "story" before the kill lands


@pytest.fixture
def killable(request, stack: Stack) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """(the killable service process, a gateway whose only replica of it is that process)."""
    name = request.param
    svc = ServiceProcess(by_name(name).module, by_name(name).env_prefix, stack.services[name].extra_env).start()
    try:
        env = stack.gateway.extra_env | {f"GATEWAY_{name.upper()}_ADDRS": svc.address}
        with running(GATEWAY.module, GATEWAY.env_prefix, env, grpc_service=False) as gw:
            yield svc, gw
    finally:
        svc.stop()


def words_sent(rt: RealtimeClient, rid: str, since: int) -> list[str]:
    return " ".join(e.get("delta", "").strip() for e in rt.log.all(
        "response.output_audio_transcript.delta", since=since) if e.get("response_id") == rid).split()


async def restart(svc: ServiceProcess) -> None:
    """The killed process started again on its own port (the gateway knows only that address)."""
    address = svc.address
    await asyncio.to_thread(lambda: svc.spawn().wait_ready())
    assert svc.address == address, f"restarted on {svc.address}, not {address}: the port was taken"


async def stream_back(gw: ServiceProcess, name: str, address: str, timeout: float = 30.0) -> None:
    """Until the gateway has reopened its long-lived stream to the service (streams.py
    logs it; its backoff reaches 4 s): speech before that is not heard."""
    line = f"{name} at {address} is back"
    for _ in range(int(timeout / 0.2)):
        if line in gw.log_path.read_text(errors="replace"):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the gateway never logged {line!r}")


async def ask(rt: RealtimeClient, text: str):
    """A text turn; returns (mark, the first audio delta)."""
    await rt.create_user_text(text)
    mark = rt.mark()
    await rt.create_response()
    first = await rt.wait_for("response.output_audio.delta", since=mark, timeout=TURN_TIMEOUT)
    return mark, first


@pytest.mark.parametrize("killable", ["llm", "tts"], indirect=True)
async def test_a_backend_killed_mid_answer_fails_the_turn_and_the_next_is_answered(killable):
    svc, gw = killable
    name = svc.module.rsplit(".", 1)[-1]
    url = f"ws://{gw.address}/v1/realtime"
    async with RealtimeClient(url) as rt:
        sid = rt.session["id"]
        await rt.update_session(events.session_config(turn_detection=None, instructions=LONG_REPLY_INSTRUCTIONS))
        for _ in range(TRIES):
            mark, first = await ask(rt, "Tell me a long story about a lighthouse keeper.")
            assert svc.proc is not None
            svc.proc.kill()                         # mid-answer: its first audio has reached the client
            await asyncio.to_thread(svc.proc.wait, 10)
            done = await rt.wait_for("response.done", since=mark, timeout=TURN_TIMEOUT,
                                     where=lambda e: (e.get("response") or {}).get("id") == first.get("response_id"))
            await restart(svc)                      # back: same port, model reloaded
            if status_of(done)[0] != "completed":
                break
            # The whole answer was written and spoken before the kill landed:
            # nothing was cut; ask again (the process is back).
        assert status_of(done)[0] == "failed", done
        err = rt.log.find("error", since=mark)
        assert err is not None and err.get("error")["code"] == "backend_unavailable", rt.log.errors(since=mark)
        assert err.get("error")["message"].startswith(f"{name} at {svc.address}"), err
        rid = done.get("response")["id"]
        said = words_sent(rt, rid, mark)
        item = done.get("response")["output"][0]
        kept = (item["content"][0].get("transcript") or "").split()
        assert said, "nothing was sent before the kill"
        print(f"{name} killed mid-answer: {len(said)} words sent, {len(kept)} kept; {err.get('error')['message']}")
        assert kept == said[:len(kept)], (kept, said)           # only words the client got, in order

        mark2, _ = await ask(rt, "Say hello to me.")             # same connection: no reconnect
        done2 = await rt.wait_for("response.done", since=mark2, timeout=TURN_TIMEOUT)
        assert status_of(done2)[0] == "completed", (done2, rt.log.errors(since=mark2))
        assert rt.audio_of(done2.get("response")["id"]), "no reply audio"
    async with RealtimeClient(url, session_id=sid) as rt2:
        items = rt2.session.get("conversation_items") or []
        stored = next((i for i in items if i["id"] == item["id"]), None)
        assert stored is not None, f"the failed answer's item {item['id']} is not in the resumed session"
        assert (stored["content"][0].get("transcript") or "").split() == kept


async def quiet(rt: RealtimeClient, gw: ServiceProcess, for_s: float = 3.0, timeout: float = 120.0) -> None:
    """Until no response is under way, none is playing, and the server has sent
    nothing for ``for_s``."""
    def settled() -> bool:
        count = lambda t: len(rt.log.all(t))  # noqa: E731
        return (count("response.created") == count("response.done") and count("output_audio_buffer.started")
                == count("output_audio_buffer.stopped") + count("output_audio_buffer.cleared"))
    n, deadline = -1, asyncio.get_running_loop().time() + timeout
    while n != len(rt.log.events) or not settled():
        assert asyncio.get_running_loop().time() < deadline, (
            f"still busy after {timeout} s:\n{turn_story(rt.log, 0, gw)}")
        n = len(rt.log.events)
        await asyncio.sleep(for_s)


async def spoken_turn_answered(rt: RealtimeClient, mic, pcm: bytes) -> None:
    """This clip's own turn is answered: the response created after its commit
    (a late answer to an earlier turn may come first, and be cut by it)."""
    mark = rt.mark()
    mic.play(pcm)
    committed = await rt.wait_for("input_audio_buffer.committed", since=mark, timeout=TURN_TIMEOUT)
    created = await rt.wait_for("response.created", since=committed.index + 1, timeout=TURN_TIMEOUT)
    rid = created.get("response")["id"]
    done = await rt.wait_for("response.done", since=created.index, timeout=TURN_TIMEOUT,
                             where=lambda e: (e.get("response") or {}).get("id") == rid)
    assert status_of(done)[0] == "completed", (done, rt.log.errors(since=mark))


@pytest.mark.parametrize("killable", ["asr", "vad"], indirect=True)
async def test_a_backend_killed_while_the_user_speaks_is_named_and_the_next_turn_answered(killable):
    svc, gw = killable
    name = svc.module.rsplit(".", 1)[-1]
    pcm, _, _ = clip("0870", RATE)               # 7 s: the kill lands inside it
    pcm2, _, _ = clip("0890", RATE)
    async with RealtimeClient(f"ws://{gw.address}/v1/realtime") as rt:
        await rt.update_session(events.session_config(input_rate=RATE, output_rate=RATE))
        mic = rt.start_microphone(RATE)
        mark = rt.mark()
        utt = mic.play(pcm)
        await rt.wait_for("input_audio_buffer.speech_started", since=mark, timeout=TURN_TIMEOUT)
        assert svc.proc is not None
        svc.proc.kill()                             # the user is speaking
        await asyncio.to_thread(svc.proc.wait, 10)
        err = await rt.wait_for("error", since=mark, timeout=TURN_TIMEOUT)
        assert err.get("error")["code"] == "backend_unavailable", err
        assert err.get("error")["message"].startswith(f"{name} at {svc.address}"), err
        await restart(svc)
        await stream_back(gw, name, svc.address)
        assert utt.done is not None
        await utt.done
        await quiet(rt, gw)                         # the rest of that clip, heard once the service was back,
        print(f"{name} killed while the user spoke: {err.get('error')['message']}")   # may be answered
        await spoken_turn_answered(rt, mic, pcm2)  # same connection: no reconnect
