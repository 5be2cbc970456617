"""A connection's handler cancelled by an anyio cancel scope (Starlette's
test client on exit; a server shutting down): every later await in its
cleanup raises at once. Invariant: the session's own tasks (audio pump, VAD
and ASR streams, a response in progress) are still cancelled and the
session stored, instead of running for ever without a client. Found by the
protocol state machine (tests/fuzz/test_protocol_statemachine.py): after a
session closed its tasks were still alive."""
from __future__ import annotations

import asyncio
import json

import anyio

from common.clock import MonotonicClock
from services.gateway import connection
from services.gateway.app import create_app
from services.gateway.fakes import FakeBackends, FakeProvider
from services.gateway.settings import GatewaySettings


class Socket:
    """Just enough of Starlette's WebSocket: a client that asked for one response
    and then says nothing more."""

    def __init__(self) -> None:
        self.scope: dict = {"subprotocols": []}
        self.headers: dict = {}
        self.query_params: dict = {}
        self.sent: list[dict] = []
        self._inbox = [{"type": "websocket.receive", "text": json.dumps({"type": "response.create"})}]

    async def accept(self, subprotocol=None) -> None:
        pass

    async def receive(self) -> dict:
        if self._inbox:
            return self._inbox.pop()
        await asyncio.Event().wait()    # never answers

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


async def test_a_cancelled_handler_still_cancels_the_sessions_tasks():
    clock = MonotonicClock()
    app = create_app(GatewaySettings(redis_url="", web_dir="/nonexistent"),
                     backends=FakeProvider(lambda sid: FakeBackends.create(clock, replies=("Fine, thanks.",))))
    ctx = app.state.ctx
    ws = Socket()
    before = asyncio.all_tasks()
    async with anyio.create_task_group() as tg:
        tg.start_soon(connection.serve, ws, ctx)
        for _ in range(200):
            if any(e["type"] == "response.created" for e in ws.sent):
                break
            await asyncio.sleep(0.01)
        session = {t for t in asyncio.all_tasks() - before if ":" in t.get_name()}
        assert {t.get_name().split(":")[1] for t in session} >= {"audio-pump", "writer"}
        assert any(":response-" in t.get_name() for t in session)
        tg.cancel_scope.cancel()
    await asyncio.sleep(0.1)   # cancelled tasks run their finally blocks
    assert [t.get_name() for t in session if not t.done()] == []
    assert ctx.admission.active == 0
    sid = next(e for e in ws.sent if e["type"] == "session.created")["session"]["id"]
    assert sid in ctx.store._memory
