"""Supervised per-session tasks, on fake backends.

Invariants: an unexpected exception in a critical per-session task (the input
audio pump, the VAD or ASR stream keeper) never leaves the session open but
deaf. Each one is an ``error`` event naming the task and a count in
``voice_gateway_task_failures_total``; the task runs again and the next turn
is heard and answered; a task that keeps failing (more than MAX_RESTARTS
times within RESTART_WINDOW_S) closes the session cleanly instead: the error
event reaches the client, then the socket closes with 1011. Cancellation is
not a failure."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from starlette.websockets import WebSocketDisconnect

from common.clock import MonotonicClock, VirtualClock
from services.gateway import metrics, supervise
from services.gateway.app import create_app
from services.gateway.fakes import FakeBackends, FakeProvider
from services.gateway.scripted import ScriptedSession
from services.gateway.settings import GatewaySettings
from services.gateway.turn_state import UserTurn

SETTINGS = dict(redis_url="", silence_duration_ms=500, vad_min_silence_ms=160, vad_min_speech_ms=120,
                prefix_padding_ms=300, min_interrupt_ms=300, false_interruption_timeout_ms=800)


def session(speech, texts, replies=("Sure.", "Okay.")) -> ScriptedSession:
    clock = VirtualClock()
    b = FakeBackends.create(clock, speech=speech, texts=texts, replies=replies)
    b.llm.token_s = 0.02
    return ScriptedSession(b, clock, GatewaySettings(**SETTINGS))


def failures(task: str, action: str) -> float:
    return REGISTRY.get_sample_value("voice_gateway_task_failures_total",
                                     metrics.base() | {"task": task, "action": action}) or 0.0


def task_errors(s: ScriptedSession) -> list[str]:
    errs = [e.event["error"] for e in s.of("error")]
    assert all(e["type"] == "server_error" for e in errs if e["code"] == supervise.ERROR_CODE), errs
    return [e["message"] for e in errs if e["code"] == supervise.ERROR_CODE]


def fail_on_calls(fn, calls: set[int]):
    """``fn`` that raises RuntimeError on the given (1-based) calls: a bug."""
    n = 0

    async def wrapped(*args):
        nonlocal n
        n += 1
        if n in calls:
            raise RuntimeError(f"bug on call {n}")
        return await fn(*args)
    return wrapped


def answered(s: ScriptedSession) -> list[str]:
    return [e.event["transcript"] for e in s.of("conversation.item.input_audio_transcription.completed")]


async def test_a_pump_crash_is_reported_and_restarted_and_the_turn_is_still_answered():
    before = failures("audio-pump", "restart")
    async with session([(1.0, 2.0)], ["hello there"]) as s:
        # Fails on the 10th chunk (0.2 s), before the user speaks.
        s.conv.turns.feed = fail_on_calls(s.conv.turns.feed, {10})
        await s.run_audio(5.0)
        msgs = task_errors(s)
        assert len(msgs) == 1 and "audio-pump" in msgs[0] and "restarted" in msgs[0], msgs
        assert answered(s) == ["hello there"]
        done = s.of("response.done")
        assert [d.event["response"]["status"] for d in done] == ["completed"]
        assert s.conv.supervisor.close_code is None and not s.conv.outbox.closed
    assert failures("audio-pump", "restart") == before + 1


async def test_a_pump_that_keeps_failing_closes_the_session_with_the_reason():
    restarts, closes = failures("audio-pump", "restart"), failures("audio-pump", "close")
    async with session([(1.0, 2.0)], ["hello there"]) as s:
        s.conv.turns.feed = fail_on_calls(s.conv.turns.feed, set(range(1, 1000)))
        await s.run_audio(1.0)
        msgs = task_errors(s)
        assert len(msgs) == supervise.MAX_RESTARTS + 1, msgs
        assert all("restarted" in m for m in msgs[:-1])
        assert "closing" in msgs[-1] and "session_id=sess_test" in msgs[-1]
        assert s.conv.supervisor.close_code == supervise.CLOSE_INTERNAL_ERROR
        assert s.conv.outbox.closed
        assert not s.of("input_audio_buffer.speech_started")
    assert failures("audio-pump", "restart") == restarts + supervise.MAX_RESTARTS
    assert failures("audio-pump", "close") == closes + 1


@pytest.mark.parametrize("task", ["vad-stream", "asr-stream"])
async def test_a_stream_keeper_crash_reopens_the_stream_and_the_next_turn_is_answered(task):
    before = failures(task, "restart")
    async with session([(0.5, 1.5), (4.0, 5.0)], ["first question", "second question"]) as s:
        keeper = s.conv.turns.vad if task == "vad-stream" else s.conv.turns.asr
        fake = s.b.vad if task == "vad-stream" else s.b.asr
        # The keeper's handler fails on the stream's first item (a bug).
        keeper._on_item = fail_on_calls(keeper._on_item, {1})
        await s.run_audio(8.0)
        msgs = task_errors(s)
        assert len(msgs) == 1 and task in msgs[0], msgs
        assert len(fake._streams) == 2, "the stream was not reopened"
        # Whatever the crash cost of the first turn, the second is heard and answered.
        assert answered(s)[-1] == "second question", answered(s)
        assert s.of("response.done")[-1].event["response"]["status"] == "completed"
    assert failures(task, "restart") == before + 1


async def test_cancelling_a_supervised_task_is_not_a_failure():
    async with session([], []) as s:
        before = failures("vad-stream", "restart") + failures("vad-stream", "close")
        await s.send({"type": "session.update", "session": {"type": "realtime",
                                                           "audio": {"input": {"turn_detection": None}}}})
        await s.clock.advance(0.1)
        assert s.conv.turns._vad_task is None       # manual turns: the VAD stream was cancelled
        assert not task_errors(s)
    assert failures("vad-stream", "restart") + failures("vad-stream", "close") == before


def test_restart_budget_counts_failures_per_task_within_a_sliding_window():
    b = supervise.RestartBudget(max_restarts=3, window_s=60.0)
    assert [b.allow("pump", t) for t in (0.0, 10.0, 20.0)] == [True, True, True]
    assert b.allow("pump", 30.0) is False          # a fourth within 60 s
    assert b.allow("asr", 30.0) is True            # another task has its own budget
    assert b.allow("pump", 60.0) is True           # the failure at 0 s has left the window
    assert b.allow("pump", 61.0) is False


@pytest.mark.timeout(30)   # without supervision the session never closes and receive blocks
def test_through_the_app_a_broken_stream_ends_in_error_events_and_close_1011():
    """A VAD client that raises something other than BackendError on open (a bug)."""
    clock = MonotonicClock()

    def make(_sid: str) -> FakeBackends:
        b = FakeBackends.create(clock)

        async def broken_open(params):
            raise ValueError("unexpected")
        b.vad.open = broken_open
        return b

    app = create_app(GatewaySettings(redis_url="", web_dir="/nonexistent"), backends=FakeProvider(make))
    with TestClient(app) as client, client.websocket_connect("/v1/realtime") as ws:
        assert ws.receive_json()["type"] == "session.created"
        got = []
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                got.append(ws.receive_json())
    errs = [e["error"] for e in got if e["type"] == "error" and e["error"]["code"] == supervise.ERROR_CODE]
    assert len(errs) == supervise.MAX_RESTARTS + 1, got
    assert "vad-stream" in errs[-1]["message"] and "ValueError" in errs[-1]["message"]
    assert closed.value.code == supervise.CLOSE_INTERNAL_ERROR


async def test_a_one_shot_turn_task_crash_drops_the_turn_says_so_and_the_next_turn_is_answered():
    # The end-of-turn wait is a one-shot task, not restarted: its failure
    # (a bug) used to be only logged, leaving a turn that could never end.
    before = failures("endpoint", "dropped")
    async with session([(1.0, 2.0), (4.0, 5.0)], ["hello there", "how are you"]) as s:
        s.conv.turns._endpoint = fail_on_calls(s.conv.turns._endpoint, {1})
        await s.run_audio(8.0)
        msgs = task_errors(s)
        assert len(msgs) == 1 and "task endpoint" in msgs[0] and "dropped" in msgs[0], msgs
        assert answered(s)[-1] == "how are you"
        assert [d.event["response"]["status"] for d in s.of("response.done")][-1] == "completed"
        assert s.conv.supervisor.close_code is None and not s.conv.outbox.closed
    assert failures("endpoint", "dropped") == before + 1


async def test_a_failed_warm_up_is_counted_and_told_and_nothing_else_changes():
    warm_ups = lambda: failures("llm-prefill", "dropped") + failures("llm-warm", "dropped")  # noqa: E731
    before = warm_ups()
    async with session([(1.0, 2.0)], ["hello there"]) as s:
        async def broken(*a, **kw):
            raise RuntimeError("bug in the warm-up")
        s.conv.planner._prefill = broken          # the real spawn site and task name (planning.py)
        await s.run_audio(5.0)
        msgs = task_errors(s)
        assert msgs and all("LLM warm-up" in m and "dropped" not in m for m in msgs), msgs
        assert answered(s) == ["hello there"]
    assert warm_ups() == before + len(msgs)


async def test_a_failed_turn_task_drops_only_its_own_turn():
    # The cut of a barge-in fails after a newer turn has started: that newer
    # turn is not the failed task's, and is answered.
    async with session([(1.0, 2.0), (4.0, 5.0)], ["hello there", "how are you"]) as s:
        await s.run_audio(3.5)
        stale = UserTurn("item_stale", 0.0, 0.0)   # a turn that is not the one in progress

        async def broken():
            raise RuntimeError("bug in a stale cut")
        await s.run_audio(1.0)                    # the second turn is in progress
        assert s.conv.turns.turn is not None
        s.conv.spawn(broken(), "interrupt", turn=stale)
        await s.run_audio(4.0)
        msgs = task_errors(s)
        assert len(msgs) == 1 and "dropped" not in msgs[0], msgs
        assert answered(s)[-1] == "how are you"


async def test_a_failed_client_cancel_names_its_event():
    async with session([(1.0, 2.0)], ["hello there"]) as s:
        async def broken():
            raise RuntimeError("bug in a cancel")
        s.conv.spawn(broken(), "client-cancel", event_id="evt_cancel_1")
        await s.run_audio(0.5)
        errs = [e.event["error"] for e in s.of("error") if e.event["error"]["code"] == supervise.ERROR_CODE]
        assert len(errs) == 1 and errs[0]["event_id"] == "evt_cancel_1", errs
