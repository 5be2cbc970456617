"""Input audio: the bounded queue between the WebSocket reader and the audio
pump, and the 16 kHz ring buffer the pump fills (so speech can be sent to ASR
from its padded start once the VAD has decided it began), with the wall time
each piece arrived (so "the last voiced sample" has a wall-clock time)."""
from __future__ import annotations

import asyncio
import bisect
import collections
from typing import cast

from common.audio import StreamResampler
from services.gateway import metrics

RATE = 16000
BYTES_PER_MS = RATE * 2 // 1000   # 32 bytes per ms at 16 kHz


class AudioQueue:
    """Appended audio (and the commit/clear commands that must follow it in
    order) waiting for the pump, bounded in milliseconds of audio and in
    entries: a client sending much faster than real time gets
    ``input_audio_queue_full`` errors for the excess instead of growing memory."""

    MAX_ENTRIES = 2000

    def __init__(self, max_ms: float) -> None:
        self.max_ms = max_ms
        self._q: collections.deque[tuple[str, bytes, object, float]] = collections.deque()
        self._ms = 0.0
        self._ready = asyncio.Event()

    @property
    def queued_ms(self) -> float:
        return self._ms

    def _push(self, entry: tuple[str, bytes, object, float]) -> None:
        self._q.append(entry)
        metrics.QUEUE_DEPTH.labels(**metrics.base(), queue="input_audio").inc()
        self._ready.set()

    def put(self, pcm: bytes, rate: int, at: float) -> bool:
        ms = len(pcm) / 2 * 1000 / rate
        if self._q and (self._ms + ms > self.max_ms or len(self._q) >= self.MAX_ENTRIES):
            return False
        self._ms += ms
        self._push(("audio", pcm, rate, at))
        return True

    def put_command(self, kind: str, event_id: str | None, at: float) -> bool:
        if len(self._q) >= self.MAX_ENTRIES:
            return False
        self._push((kind, b"", event_id, at))
        return True

    async def get(self) -> tuple[str, bytes, object, float]:
        """("audio", pcm, rate, at) or (command, b"", event_id, at)."""
        while not self._q:
            self._ready.clear()
            await self._ready.wait()
        entry = self._q.popleft()
        if entry[0] == "audio":
            self._ms -= len(entry[1]) / 2 * 1000 / cast(int, entry[2])   # an audio entry's rate
        metrics.QUEUE_DEPTH.labels(**metrics.base(), queue="input_audio").dec()
        return entry

    def discard(self) -> None:
        metrics.QUEUE_DEPTH.labels(**metrics.base(), queue="input_audio").dec(len(self._q))
        self._q.clear()
        self._ms = 0.0


class Resampler:
    """Input rate → 16 kHz, rebuilt when the session's input rate changes.
    The stream resampler holds back a little audio (its filter delay and
    burst output, ~20 ms for 24 kHz); ``delay_ms`` says how much, so the
    ring buffer can stamp its output with the wall time it was recorded."""

    def __init__(self) -> None:
        self._rate = 0
        self._rs: StreamResampler | None = None
        self._in = self._out = 0

    @property
    def delay_ms(self) -> float:
        return max(0.0, self._in * 1000.0 / self._rate - self._out / 16.0) if self._rate else 0.0

    def to16k(self, pcm: bytes, rate: int) -> bytes:
        if rate != self._rate:
            self._rate, self._rs, self._in, self._out = rate, StreamResampler(rate, RATE), 0, 0
        assert self._rs is not None
        out = self._rs.process(pcm)
        self._in += len(pcm) // 2
        self._out += len(out) // 2
        return out


class RingBuffer:
    """The last ``keep_ms`` of 16 kHz audio, addressed by ms since the session's
    first sample, with arrival wall times."""

    def __init__(self, keep_ms: int = 6000) -> None:
        self._keep = keep_ms * BYTES_PER_MS
        self._buf = bytearray()
        self._start = 0            # absolute byte offset of _buf[0]
        self._marks: collections.deque[tuple[float, float]] = collections.deque()  # (end_ms, wall)

    @property
    def end_ms(self) -> float:
        return (self._start + len(self._buf)) / BYTES_PER_MS

    @property
    def start_ms(self) -> float:
        """The oldest sample still kept."""
        return self._start / BYTES_PER_MS

    def append(self, pcm16k: bytes, wall: float) -> None:
        self._buf += pcm16k
        self._marks.append((self.end_ms, wall))
        excess = len(self._buf) - self._keep
        if excess > 0:
            excess -= excess % 2
            del self._buf[:excess]
            self._start += excess
            while len(self._marks) > 1 and self._marks[1][0] <= self._start / BYTES_PER_MS:
                self._marks.popleft()

    def slice(self, from_ms: float, to_ms: float | None = None) -> bytes:
        lo = max(int(from_ms * BYTES_PER_MS) & ~1, self._start)
        hi = len(self._buf) + self._start if to_ms is None else min(int(to_ms * BYTES_PER_MS) & ~1,
                                                                     self._start + len(self._buf))
        if hi <= lo:
            return b""
        return bytes(self._buf[lo - self._start:hi - self._start])

    def wall_of(self, ms: float) -> float | None:
        """Wall time the sample at ``ms`` was captured, assuming the client sends
        each chunk as soon as it is recorded (a real-time client)."""
        if not self._marks:
            return None
        ends = [m[0] for m in self._marks]
        i = bisect.bisect_left(ends, ms)
        if i >= len(self._marks):
            end, wall = self._marks[-1]
        else:
            end, wall = self._marks[i]
        return wall - (end - ms) / 1000.0
