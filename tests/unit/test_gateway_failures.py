"""A failure inside the gateway itself (a bug, not a backend outage) costs the
client one ``error`` and, for a response, a ``response.done`` with status
``failed``: never the socket, never a response left ``in_progress`` that
refuses every later ``response.create``."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from common.clock import MonotonicClock
from services.gateway.app import create_app
from services.gateway.fakes import FakeBackends, FakeProvider, FakeTts
from services.gateway.settings import GatewaySettings
from tests.unit.test_gateway_protocol import recv_until, still_usable


@pytest.fixture
def client():
    clock = MonotonicClock()
    provider = FakeProvider(lambda sid: FakeBackends.create(clock, replies=("Hello there.",)))
    app = create_app(GatewaySettings(redis_url="", web_dir="/nonexistent"), backends=provider)
    with TestClient(app) as c:
        yield c


def test_a_bug_while_answering_fails_the_response_and_the_next_one_runs(client, monkeypatch):
    real = FakeTts.synthesize
    calls = []

    def broken_once(self, *a, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise AttributeError("a bug in the TTS client")
        return real(self, *a, **kw)
    monkeypatch.setattr(FakeTts, "synthesize", broken_once)
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        still_usable(ws)
        ws.send_json({"type": "response.create", "event_id": "c1"})
        evs = recv_until(ws, "response.done")
        done = evs[-1]["response"]
        assert done["status"] == "failed"
        assert done["status_details"]["error"]["code"] == "internal_error"
        assert any(e["type"] == "error" and e["error"]["code"] == "internal_error" for e in evs)
        ws.send_json({"type": "response.create"})
        assert recv_until(ws, "response.done")[-1]["response"]["status"] == "completed"


def test_an_event_the_server_fails_on_gets_an_error_and_the_session_goes_on(client, monkeypatch):
    from services.gateway.conversation import Conversation

    async def broken(self, ev):
        raise RuntimeError("a bug")
    monkeypatch.setattr(Conversation, "_on_conversation_item_retrieve", broken)
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "conversation.item.retrieve", "item_id": "x", "event_id": "r1"})
        err = recv_until(ws, "error")[-1]["error"]
        assert (err["code"], err["type"], err["event_id"]) == ("internal_error", "server_error", "r1")
        still_usable(ws)


async def test_waiting_for_finals_cancelled_leaves_nothing_unretrieved(caplog):
    """Found by tests/fuzz (seeds 2 and 3 at 25,000 messages): a turn's wait for
    its finals, cancelled (barge-in, session closing), left a gather future whose
    CancelledError was never retrieved, logged by asyncio at ERROR."""
    import asyncio
    import gc
    import logging

    from services.gateway.turns import Segment, UserTurn

    turn = UserTurn(item_id="item_1", start_ms=0.0, onset_wall=0.0,
                    segments=[Segment(0.0, 0.0), Segment(500.0, 500.0)])
    turn.segments[0].done.set()
    assert await turn.wait_finals(0.01, MonotonicClock()) is False          # the second final never came
    turn.segments[1].done.set()
    assert await turn.wait_finals(0.01, MonotonicClock()) is True
    turn.segments.append(Segment(900.0, 900.0))
    caplog.set_level(logging.ERROR, logger="asyncio")
    task = asyncio.create_task(turn.wait_finals(5.0, MonotonicClock()))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()
    del task                 # its frames held the futures it waited on
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
