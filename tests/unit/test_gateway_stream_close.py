"""Closing a duplex gRPC stream (a restart with new settings) while its
reader waits: grpc.aio raises CancelledError in the reader although its task
was not cancelled. Invariant: that ends the stream like an EOF (the keeper
then reopens it); a real cancellation of the reader's task still propagates."""
from __future__ import annotations

import asyncio

import pytest

from services.gateway.backends.grpc_clients import GrpcVadStream


class PendingCall:
    """Like grpc.aio's call: a pending read() raises CancelledError once cancel() runs."""

    def __init__(self) -> None:
        self._fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._cancelled = False

    async def read(self):
        return await self._fut

    def cancel(self) -> bool:
        self._cancelled = True
        self._fut.cancel()
        return True

    def cancelled(self) -> bool:
        return self._cancelled


async def test_closing_the_stream_under_a_pending_read_ends_it_quietly():
    stream = GrpcVadStream("vad", "127.0.0.1:1", PendingCall())

    async def reader() -> list:
        return [ev async for ev in stream.events()]

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)
    await stream.close()
    assert await asyncio.wait_for(task, 1.0) == []
    assert not task.cancelled()


async def test_cancelling_the_reader_task_still_cancels_it():
    stream = GrpcVadStream("vad", "127.0.0.1:1", PendingCall())

    async def reader() -> list:
        return [ev async for ev in stream.events()]

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
