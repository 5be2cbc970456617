"""Deadlines on the gateway's gRPC calls, so a backend that hangs (accepts a
call, then never answers) becomes a BackendError naming it instead of a turn
that waits for ever.

- Unary calls (RAG search, health) carry a plain gRPC deadline.
- Server streams (LLM tokens, TTS audio) owe a message at all times until
  they end: each read has ``idle_s`` to arrive (``read_within``); the whole
  call still has the overall ``backend_timeout_s`` deadline on top.
- Duplex streams (ASR, VAD) are long-lived and often rightly silent (nobody
  speaks): they owe a reply only after a request that asks for one (an ASR
  end of utterance or flush; a second of audio the VAD has not acknowledged,
  since it reports progress each second). ``ReplyWatch`` is that bookkeeping, pure over
  the times it is given; ``wait_reply`` applies it to a read without ever
  cancelling the read itself, because cancelling a pending grpc.aio read
  cancels the whole call.

Also the keepalive options of the gateway's channels: a backend host that
vanishes without closing its TCP connections (power loss, a network
partition) is noticed by missed pings within ``KEEPALIVE_TIME_MS +
KEEPALIVE_TIMEOUT_MS`` instead of the kernel's ~2 h TCP timeout."""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from services.gateway.backends.types import BackendError

# Ping every 10 s, dead after 5 s without the ack. The servers allow pings
# this often (common/server.py: min_recv_ping_interval 5 s), else they would
# answer with GOAWAY "too_many_pings".
KEEPALIVE_TIME_MS = 10_000
KEEPALIVE_TIMEOUT_MS = 5_000
CHANNEL_KEEPALIVE = [
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    # A session's VAD/ASR streams idle for minutes between turns: ping then too.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # HTTP/2 flow-control (BDP) probes are pings too, sent on a timer even with
    # nothing received (grpc/grpc#22996); with keepalive they drew a GOAWAY
    # "too_many_pings" that cut a session's ASR stream. Messages here are small.
    ("grpc.http2.bdp_probe", 0),
]
DEFAULT_IDLE_S = 15.0


def hung(name: str, address: str, idle_s: float, what: str) -> BackendError:
    return BackendError(name, address, f"no {what} for {idle_s:g} s (the call hangs)")


async def read_within(call: Any, idle_s: float, name: str, address: str, what: str) -> Any:
    """The next message of a server stream (or grpc.aio.EOF), or BackendError
    after ``idle_s`` without one. The timed-out read is cancelled, which
    cancels the call: the server sees CANCELLED and stops.

    ``asyncio.timeout``, not ``wait_for``: on Python 3.11 a ``wait_for`` whose
    read completes in the instant its task is cancelled returns the message
    and drops the cancellation (cpython gh-86296). A response's TTS reader
    cancelled by the LLM's failure that way went on waiting for clauses that
    never came, and the response never ended (fresh-clone CI, 2026-12-06)."""
    try:
        async with asyncio.timeout(idle_s):
            return await call.read()
    except TimeoutError:
        call.cancel()
        raise hung(name, address, idle_s, what) from None


class ReplyWatch:
    """Whether a duplex stream owes a reply, and since when.

    ``expect`` at a request that asks for a reply; ``answered`` at the reply;
    any other message from the server is ``progress`` (it is alive and
    working, so the wait restarts). Hung: a reply owed for ``idle_s`` with
    nothing received meanwhile."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self.due_since: float | None = None

    def expect(self, now: float) -> None:
        if self.due_since is None:
            self.due_since = now

    def answered(self) -> None:
        self.due_since = None

    def progress(self, now: float) -> None:
        if self.due_since is not None:
            self.due_since = now

    def hung(self, now: float) -> bool:
        return self.due_since is not None and now - self.due_since >= self.idle_s

    def wait_s(self, now: float) -> float:
        """How long the reader may wait before it must look again: until the
        deadline when a reply is owed, else a quarter of ``idle_s`` (an
        ``expect`` may come while the reader waits; it then notices within
        ``1.25 * idle_s``)."""
        if self.due_since is None:
            return self.idle_s / 4
        return max(0.0, self.due_since + self.idle_s - now)


async def wait_reply(read: "asyncio.Future", watch: ReplyWatch, now: Callable[[], float],
                     name: str, address: str, what: str) -> Any:
    """The result of the pending ``read`` task, or BackendError once ``watch``
    says the stream hangs. ``read`` is never cancelled here (the caller owns it)."""
    while True:
        done, _ = await asyncio.wait({read}, timeout=watch.wait_s(now()))
        if done:
            return read.result()
        if watch.hung(now()):
            raise hung(name, address, watch.idle_s, what)
