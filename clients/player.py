"""A simulated loudspeaker: what a real client would have *played* of the
assistant's audio by a given time. Audio plays from its arrival at real time,
back to back; ``output_audio_buffer.cleared`` (or a local stop) drops what
was still queued, and audio that arrives after a clear (the server resuming
after a false interruption) plays on from what had been heard. The played milliseconds are what a client sends in
``conversation.item.truncate`` so the server can cut the history to what the
user heard."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class ItemPlayout:
    item_id: str
    rate: int
    received_ms: float = 0.0
    first_t: float | None = None
    queue_end_t: float = 0.0      # when the last received sample finishes playing
    stopped_t: float | None = None

    def played_ms(self, now: float) -> float:
        t = now if self.stopped_t is None else min(now, self.stopped_t)
        if self.first_t is None:
            return 0.0
        not_yet = max(0.0, self.queue_end_t - t) * 1000.0
        return max(0.0, self.received_ms - not_yet)


class Player:
    """Playout of every assistant item in one session (one speaker, so items queue)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.items: dict[str, ItemPlayout] = {}
        self._speaker_free_t = 0.0
        self.current: str | None = None

    def on_audio(self, item_id: str, nbytes: int, t: float) -> None:
        it = self.items.get(item_id)
        if it is None:
            it = self.items[item_id] = ItemPlayout(item_id, self.rate)
        if it.stopped_t is not None:
            # Audio after a clear is the server resuming (a false interruption):
            # it re-sends from what was heard, so restart the count there.
            it.received_ms = it.played_ms(it.stopped_t)
            it.queue_end_t = it.stopped_t
            it.stopped_t = None
        dur = nbytes / 2 / self.rate
        start = max(t, self._speaker_free_t, it.queue_end_t)
        if it.first_t is None:
            it.first_t = start
        it.queue_end_t = start + dur
        it.received_ms += dur * 1000.0
        self._speaker_free_t = it.queue_end_t
        self.current = item_id

    def stop(self, t: float) -> None:
        """Drop everything queued (on output_audio_buffer.cleared)."""
        for it in self.items.values():
            if it.stopped_t is None and it.first_t is not None:
                it.stopped_t = t
        self._speaker_free_t = min(self._speaker_free_t, t)

    def played_ms(self, item_id: str, now: float) -> float:
        it = self.items.get(item_id)
        return it.played_ms(now) if it else 0.0

    def playing(self, now: float) -> bool:
        return any(it.stopped_t is None and it.queue_end_t > now for it in self.items.values())
