"""Keeps a session's long-lived VAD or ASR stream open. When the service goes
away the session gets one ``error`` event naming it (code backend_unavailable),
audio meant for it is dropped (turn-taking degrades, the session stays usable),
and the stream is reopened with backoff until the service is back.

A stream counts as back only once it proved it: it delivered an item or
stayed open ``healthy_after_s``. A server that refuses a stream (its
maximum of streams) accepts the call and refuses on the first read; counting
the open as recovery reset the backoff, so every session reopened every
250 ms and the client got a new error each time."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from services.gateway import metrics
from services.gateway.backends.types import BackendError

log = logging.getLogger(__name__)


class StreamKeeper:
    def __init__(self, client: Any, open_stream: Callable[[], Awaitable[Any]],
                 read: Callable[[Any], Any], on_item: Callable[[Any], Awaitable[None]],
                 on_up: Callable[[Any], None], on_down: Callable[[BackendError, bool], None],
                 clock: Any, max_backoff_s: float = 4.0, healthy_after_s: float = 2.0) -> None:
        self.client, self._open, self._read = client, open_stream, read
        self._on_item, self._on_up, self._on_down = on_item, on_up, on_down
        self._clock, self._max_backoff = clock, max_backoff_s
        self._healthy_after = healthy_after_s
        self.stream: Any = None
        self.down = False
        self._restart = False
        self._send_error: BackendError | None = None   # why send() gave up on the stream

    async def run(self) -> None:
        backoff = 0.25
        while True:
            stream, proven, opened_at = None, False, 0.0
            try:
                if not await self.client.ready():
                    raise BackendError(self.client.name, self.client.address, "not SERVING")
                stream = await self._open()
                opened_at = self._clock.now()
                self.stream, self._restart, self._send_error = stream, False, None
                self._on_up(stream)
                async for item in self._read(stream):
                    if not proven:
                        proven = True
                        backoff = self._back_up(backoff)
                    await self._on_item(item)
                if self._restart:
                    continue  # closed on purpose (new config): reopen at once
                # A failed write closed it: that failure is the reason to report.
                raise self._send_error or BackendError(self.client.name, self.client.address, "stream ended")
            except BackendError as exc:
                if self._restart:
                    continue
                if stream is not None and not proven and self._clock.now() - opened_at >= self._healthy_after:
                    backoff = self._back_up(backoff)     # it served a while without output
                first = not self.down
                self.down, self.stream = True, None
                metrics.BACKEND_ERRORS.labels(**metrics.base(), backend=self.client.name).inc()
                (log.warning if first else log.debug)("%s", exc.message)
                self._on_down(exc, first)
                await self._clock.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
            finally:
                if stream is not None:
                    self.stream = None if self.stream is stream else self.stream
                    await stream.close()

    def _back_up(self, backoff: float) -> float:
        """The stream proved healthy: the outage (if any) is over."""
        if self.down:
            log.info("%s at %s is back", self.client.name, self.client.address)
        self.down = False
        return 0.25

    async def send(self, method: str, *args: Any) -> bool:
        """Call ``stream.<method>(*args)``; False if there is no live stream."""
        stream = self.stream
        if stream is None:
            return False
        try:
            await getattr(stream, method)(*args)
            return True
        except BackendError as exc:
            # The reader sees the stream end and reports this failure; stop using it.
            self._send_error = exc
            if self.stream is stream:
                self.stream = None
            await stream.close()
            return False

    async def restart(self) -> None:
        """Reopen with the current parameters (e.g. after session.update)."""
        stream = self.stream
        if stream is not None:
            self._restart = True
            self.stream = None
            await stream.close()
