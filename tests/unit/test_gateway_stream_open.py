"""Invariant: a VAD/ASR stream the gateway starts to open and does not
finish opening (the session closed meanwhile, or the server already ended
the call) is cancelled, so its server frees the slot; and a write to a call
the server ended is the backend's error, not an internal one.

Fake grpc.aio calls: the race (a session closed within milliseconds of its
resume, while its streams send their config) is what fresh-clone CI hit:
eight leaked streams held the ASR at its maximum for good."""
from __future__ import annotations

import asyncio

import pytest

from services.gateway.backends.grpc_clients import GrpcAsr, GrpcVad
from services.gateway.backends.types import AsrParams, BackendError, VadParams


class FakeCall:
    def __init__(self, write_blocks: bool = False, finished: bool = False) -> None:
        self.write_blocks, self.finished = write_blocks, finished
        self.cancelled_ = False
        self.writing = asyncio.Event()

    async def write(self, req) -> None:
        self.writing.set()
        if self.finished:
            raise asyncio.InvalidStateError("RPC already finished.")
        if self.write_blocks:
            await asyncio.Event().wait()

    def cancel(self) -> bool:
        self.cancelled_ = True
        return True

    def cancelled(self) -> bool:
        return self.cancelled_


class FakeChannel:
    def __init__(self, call: FakeCall) -> None:
        self.call = call

    def stream_stream(self, *args, **kw):
        return lambda *a, **k: self.call

    def unary_unary(self, *args, **kw):      # the stub's other methods: never called here
        return lambda *a, **k: None

    unary_stream = stream_unary = unary_unary


def _client(kind: str, call: FakeCall):
    cls, params = (GrpcAsr, AsrParams("en")) if kind == "asr" else (GrpcVad, VadParams(0.5, 120, 128, 300))
    return cls(kind, "127.0.0.1:1", FakeChannel(call), 30.0, 5.0), params


@pytest.mark.parametrize("kind", ["asr", "vad"])
async def test_a_stream_cancelled_while_opening_is_cancelled_at_the_server(kind):
    call = FakeCall(write_blocks=True)
    client, params = _client(kind, call)
    opening = asyncio.ensure_future(client.open(params))
    await call.writing.wait()
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert call.cancelled_


@pytest.mark.parametrize("kind", ["asr", "vad"])
async def test_a_call_the_server_already_ended_is_a_backend_error_and_is_cancelled(kind):
    call = FakeCall(finished=True)
    client, params = _client(kind, call)
    with pytest.raises(BackendError) as err:
        await client.open(params)
    assert err.value.backend == kind and "stream closed" in err.value.message
    assert call.cancelled_
