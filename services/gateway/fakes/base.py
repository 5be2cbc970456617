"""What every fake backend shares: up/down (``kill()`` fails the streams it
serves with BackendError, like a killed service) and an in-order stream of
results that a failure can interrupt."""
from __future__ import annotations

import asyncio

from services.gateway.backends.types import BackendError


class FakeBackend:
    def __init__(self, name: str, clock) -> None:
        self.name, self.address, self.clock = name, f"fake-{name}", clock
        self.up = True
        self._streams: list = []

    async def ready(self) -> bool:
        return self.up

    def _check(self) -> None:
        if not self.up:
            raise BackendError(self.name, self.address, "unavailable: connection refused")

    def kill(self) -> None:
        self.up = False
        self.reset_streams()

    def reset_streams(self) -> None:
        """Every open stream fails with a connection reset; the service stays up
        (a GOAWAY, a restart between two health checks)."""
        for s in self._streams:
            s.fail(BackendError(self.name, self.address, "unavailable: connection reset"))
        self._streams.clear()


class FakeStream:
    def __init__(self) -> None:
        self._out: asyncio.Queue = asyncio.Queue()
        self.closed = False
        self.traces: list[dict[str, str]] = []   # in-band trace contexts received

    async def send_trace(self, carrier: dict[str, str]) -> None:
        self.traces.append(dict(carrier))

    def fail(self, exc: BackendError) -> None:
        self._out.put_nowait(exc)

    async def _iter(self):
        while True:
            item = await self._out.get()
            if item is None:
                return
            if isinstance(item, BackendError):
                raise item
            yield item

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._out.put_nowait(None)
