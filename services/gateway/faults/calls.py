"""Faults applied to the gateway's real gRPC calls (table.py says which).

The proxies stand where the grpc.aio call object stands and fail the way a
real backend does (AioRpcError UNAVAILABLE, a read that never returns), so
everything above them — the clients' error mapping, the idle deadlines
(deadlines.py), breakers and failover (failover.py), the turn's error
handling — runs exactly as it would against a broken service. Nothing here
runs unless a fault is set (``inject`` returns the call itself)."""
from __future__ import annotations

import asyncio
from typing import Any, Callable

import grpc

from services.gateway import metrics
from services.gateway.faults.table import Fault, FaultTable


HANG_POLL_S = 0.25


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def _hit(table: FaultTable | None, service: str, variant: str = "stable") -> Fault | None:
    if table is None or not table.active:
        return None
    fault = table.pick(service, variant)
    if fault is not None:
        metrics.FAULTS_INJECTED.labels(**metrics.base(), backend=service, kind=fault.kind).inc()
    return fault


def inject(table: FaultTable | None, service: str, call: Any, variant: str = "stable") -> Any:
    """A server-streaming call (LLM tokens, TTS audio), or a proxy of it
    suffering the fault drawn for it when it starts."""
    fault = _hit(table, service, variant)
    return call if fault is None else FaultyStream(call, lambda: fault, duplex=False)


def inject_duplex(table: FaultTable | None, service: str, call: Any, variant: str = "stable") -> Any:
    """A long-lived VAD/ASR stream: it outlives any fault, so the fault is
    looked up as it goes (at each write and each message), drawn once per
    fault set; with no fault set that look-up is one attribute test."""
    if table is None:
        return call
    return FaultyStream(call, _Live(table, service, variant), duplex=True)


class _Live:
    """The fault a long-lived stream suffers now (drawn once for each fault set)."""

    def __init__(self, table: FaultTable, service: str, variant: str = "stable") -> None:
        self.table, self.service, self.variant = table, service, variant
        self._seen: Fault | None = None
        self._hit: Fault | None = None

    def __call__(self) -> Fault | None:
        if not self.table.active:
            return None
        current = self.table.peek(self.service, self.variant)
        if current is not self._seen:
            self._seen = current
            self._hit = _hit(self.table, self.service, self.variant) if current is not None else None
        return self._hit if current is not None else None


async def inject_unary(table: FaultTable | None, service: str, call: Any, timeout: float,
                       variant: str = "stable") -> Any:
    """Await a unary call, suffering this call's fault if one is drawn."""
    fault = _hit(table, service, variant)
    if fault is None:
        return await call
    if fault.kind in ("error", "reset"):
        call.cancel()
        raise _rpc_error(grpc.StatusCode.UNAVAILABLE, f"injected fault: {fault.kind}")
    if fault.kind == "hang":
        # The server accepted the call and never answers: the caller's deadline ends it.
        call.cancel()
        await asyncio.sleep(timeout)
        raise _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded (injected hang)")
    await asyncio.sleep(fault.latency_ms / 1000)
    return await call


class FaultyStream:
    """A gRPC stream call suffering a fault (``fault()`` says which, now).
    Reads fail, hang or come late; writes fail under error and reset, as to
    a server that went away."""

    def __init__(self, call: Any, fault: Callable[[], Fault | None], duplex: bool) -> None:
        self._call, self._fault, self._duplex = call, fault, duplex
        self._messages = 0            # messages read under the current fault
        self._under: Fault | None = None

    def __getattr__(self, item: str) -> Any:
        return getattr(self._call, item)

    def _now(self) -> Fault | None:
        f = self._fault()
        if f is not self._under:
            self._under, self._messages = f, 0
        return f

    async def write(self, request: Any) -> None:
        f = self._now()
        if f is not None and f.kind in ("error", "reset"):
            self._fail(f)
        await self._call.write(request)

    def _fail(self, f: Fault) -> None:
        self._call.cancel()
        what = "error" if f.kind == "error" else "connection reset"
        raise _rpc_error(grpc.StatusCode.UNAVAILABLE, f"injected fault: {what}")

    async def _suffer(self, f: Fault | None) -> None:
        if f is None:
            return
        if f.kind == "error" or (f.kind == "reset" and self._messages >= f.after_messages):
            self._fail(f)
        if f.kind == "hang":
            # Until someone gives up on the read (and with it the call), the
            # call's own deadline ends it, or, on a long-lived stream, the
            # fault ends (its messages then flow).
            try:
                while self._now() is f:
                    if self._call.done() and await self._call.code() != grpc.StatusCode.OK:
                        break         # its deadline expired (the server's answer, if any, is ignored)
                    await asyncio.sleep(HANG_POLL_S)
            except BaseException:
                self._call.cancel()
                raise

    async def read(self) -> Any:
        await self._suffer(self._now())
        msg = await self._call.read()
        if msg is grpc.aio.EOF:
            return msg
        # A long-lived stream's read may have started before the fault was set.
        f = self._now()
        await self._suffer(f)
        if f is not None and f.kind == "latency" and (self._duplex or self._messages == 0):
            await asyncio.sleep(f.latency_ms / 1000)
        self._messages += 1
        return msg


async def store_fault(table: FaultTable) -> None:
    """The session store's Redis operation suffering a drill's fault: late,
    or failing as a connection to an unreachable Redis does."""
    fault = _hit(table, "redis")
    if fault is None:
        return
    if fault.kind == "latency":
        await asyncio.sleep(fault.latency_ms / 1000)
        return
    raise ConnectionError(f"injected fault: redis {fault.kind}")
