"""The audio of one response on its way to the listener, as arithmetic: what
was synthesised, what was sent, and what the listener has heard by now. No
IO and no tasks: response.py sends, sleeps and emits; this decides.

Played position: the client plays what it receives as it arrives, so the
position is min(audio sent, wall time since audio started), rewound on
underrun. Audio is sent at most ``lead_ms`` ahead of the listener, and a
clause's synthesis is urgent only while the listener is about to wait for
it. A pause (barge-in) freezes the position and takes back the unsent queued
audio; resume re-sends from the frozen position (or from where the client
said it stopped playing, if it truncated the item meanwhile). Each stretch
of playing (start or resume to pause, underrun to underrun) is kept as a
span, so the echo canceller (echo_ref.py) can ask what the listener's
speaker played at a past moment. Times come from the injected clock."""
from __future__ import annotations

import collections
from typing import Any

from services.gateway.backends.types import Priority

CHUNK_MS = 100          # largest audio delta
# A later clause is synthesised as background work (it plays after the ones
# before it) unless less than this much audio before it is left to play: then
# the listener is about to wait for it, as for a first clause.
URGENT_LEAD_MS = 500.0
SPANS_KEPT = 8          # stretches of playing remembered for position_at()


class Playout:
    def __init__(self, clock: Any, rate: int) -> None:
        self.clock = clock
        self.bpm = rate * 2 / 1000.0          # bytes per ms of output audio
        self.audio = bytearray()
        self.sent = 0                          # bytes of self.audio sent
        self.started = False                   # the first audio went out
        self.play_origin = 0.0                 # clock time the listener's position 0 played
        self.paused = False
        self.frozen_ms = 0.0                   # the position when paused
        self.chunk = int(CHUNK_MS * self.bpm) & ~1
        # [clock time playing began, position then (ms), clock time it stopped]:
        # the recent stretches of playing, newest last, for position_at().
        self.spans: collections.deque[list[float]] = collections.deque(maxlen=SPANS_KEPT)
        # Silences (s) the listener heard inside the answer because its audio
        # came too late (an underrun), not yet reported; the sender drains it.
        self.gaps: list[float] = []

    @property
    def sent_ms(self) -> float:
        return self.sent / self.bpm

    @property
    def total_ms(self) -> float:
        return len(self.audio) / self.bpm

    def played_ms(self) -> float:
        if not self.started:
            return 0.0
        if self.paused:
            return self.frozen_ms
        return max(0.0, min(self.sent_ms, (self.clock.now() - self.play_origin) * 1000.0))

    def heard_ms(self) -> float:
        """What the listener heard of the audio sent (a cancel keeps that much)."""
        if self.paused:
            return min(self.frozen_ms, self.sent_ms)
        return min(self.played_ms(), self.sent_ms)

    def position_at(self, t: float) -> float | None:
        """The position (ms) the listener's speaker was playing at clock time
        ``t`` (now or a little before), or None if it was silent then."""
        for began, pos, stopped in reversed(self.spans):
            if began <= t < stopped:
                at = pos + (t - began) * 1000.0
                return at if at < self.sent_ms else None
            if t >= stopped:
                return None
        return None

    def _span(self, now: float, pos: float) -> None:
        if self.spans and self.spans[-1][2] > now:
            self.spans[-1][2] = now
        self.spans.append([now, pos, float("inf")])

    @property
    def all_sent(self) -> bool:
        return self.sent >= len(self.audio)

    def append(self, pcm: bytes) -> None:
        self.audio += pcm

    def clause_priority(self, index: int) -> Priority:
        """The first clause is the answer's first audio: urgent. A later one is
        background while enough audio before it is left to play, so other
        sessions' first clauses go ahead of it."""
        if index == 0 or self.total_ms - self.played_ms() < URGENT_LEAD_MS:
            return Priority.URGENT
        return Priority.BACKGROUND

    def lead_wait_s(self, now: float, lead_ms: float) -> float | None:
        """Seconds to wait before the next chunk (the listener is ``lead_ms``
        behind or more), or None to send it now. A listener that ran dry
        restarts playback now."""
        if not self.started:
            return None
        elapsed = (now - self.play_origin) * 1000.0
        if elapsed > self.sent_ms:
            ran_dry = self.play_origin + self.sent_ms / 1000.0
            self.gaps.append(now - ran_dry)
            if self.spans:
                self.spans[-1][2] = min(self.spans[-1][2], ran_dry)
            self.play_origin = now - self.sent_ms / 1000.0
            self._span(now, self.sent_ms)
            elapsed = self.sent_ms
        ahead = self.sent_ms - elapsed
        if ahead >= lead_ms:
            return (ahead - lead_ms + CHUNK_MS / 2) / 1000.0
        return None

    def next_chunk(self) -> bytes:
        return bytes(self.audio[self.sent:self.sent + self.chunk])

    def start(self, now: float) -> None:
        """The first chunk goes out: the listener's position 0 plays now."""
        self.started = True
        self.play_origin = now
        self._span(now, 0.0)

    def mark_sent(self, pcm: bytes) -> None:
        self.sent += len(pcm)

    def freeze(self, purged_ms: float) -> None:
        """Pause: ``purged_ms`` of sent audio never left the server (taken
        back from the outbox); the position stops here."""
        self.sent = max(0, self.sent - (int(purged_ms * self.bpm) & ~1))
        self.frozen_ms = self.played_ms()
        self.paused = True
        if self.spans:
            self.spans[-1][2] = min(self.spans[-1][2], self.clock.now())

    def resume(self, truncated_ms: float | None) -> None:
        """Go on from the frozen position, or from ``truncated_ms`` (what the
        client said it played) if that is earlier."""
        self.paused = False
        if truncated_ms is not None:
            self.frozen_ms = min(self.frozen_ms, truncated_ms)
        self.sent = int(self.frozen_ms * self.bpm) & ~1
        if self.started:
            self.play_origin = self.clock.now() - self.frozen_ms / 1000.0
            self._span(self.clock.now(), self.frozen_ms)
