"""A client on loudspeakers: the assistant audio it receives plays from its
speaker at real time and comes back into its microphone, delayed,
attenuated, with a little reverberation and background noise, mixed with
whatever the user says over it. For tests and benchmarks of echo handling
(issue #13: "the assistant interrupts itself on laptop speakers").

    async with RealtimeClient(url) as rt:
        mic = rt.start_microphone(24000)
        speaker = attach_echo(rt, mic, Room(delay_ms=120, level_db=-10))
        mic.play(question)             # the user; the answer's echo is mixed in by itself

The speaker follows clients/player.py's rules (audio plays from arrival, back
to back; ``output_audio_buffer.cleared`` drops what was queued), but keeps
the samples, on the microphone's own sample clock. A client of the protocol
only: nothing from services/ is imported."""
from __future__ import annotations

import base64
import dataclasses
import math
import threading

import numpy as np

from common.audio import resample_pcm16


@dataclasses.dataclass(frozen=True)
class Room:
    """The acoustic path from the speaker back to the microphone."""

    delay_ms: float = 120.0      # speaker → mic, with the device's own buffering
    level_db: float = -10.0      # echo power relative to the played audio
    reverb_ms: float = 120.0     # length of the room's decaying tail
    decay_ms: float = 30.0       # its time constant
    noise_dbfs: float = -60.0    # background noise at the mic
    seed: int = 0

    def impulse_response(self, rate: int) -> np.ndarray:
        """A direct path and an exponentially decaying random tail, scaled so
        the echo's power is ``level_db`` below the played audio's."""
        rng = np.random.default_rng(self.seed)
        n = max(1, int(self.reverb_ms * rate / 1000))
        ir = np.zeros(n)
        ir[0] = 1.0
        t = np.arange(1, n)
        ir[1:] = rng.normal(0.0, 1.0, n - 1) * np.exp(-t / (self.decay_ms * rate / 1000)) * 0.3
        return ir / math.sqrt(float(np.dot(ir, ir))) * 10 ** (self.level_db / 20)


class EchoSpeaker:
    """The speaker's output as samples at the mic's rate and clock, and its echo."""

    def __init__(self, mic_rate: int, out_rate: int, room: Room, sample_of_time) -> None:
        self.rate, self.out_rate, self.room = mic_rate, out_rate, room
        self._sample_of = sample_of_time       # monotonic time → mic sample index
        self._ir = room.impulse_response(mic_rate)
        self._delay = int(room.delay_ms * mic_rate / 1000)
        self._played = np.zeros(0)             # speaker samples from mic sample index _base on
        self._base = 0
        self._free = 0                         # first speaker sample not yet claimed
        self._rng = np.random.default_rng(room.seed + 1)
        self._noise = 32768 * 10 ** (room.noise_dbfs / 20)
        self.played_s = 0.0                    # assistant audio played, for reports
        # The sync client calls on_event from its reader thread and mix from its mic thread.
        self._lock = threading.Lock()

    def on_event(self, data: dict, t: float) -> None:
        with self._lock:
            self._on_event(data, t)

    def _on_event(self, data: dict, t: float) -> None:
        typ = data.get("type")
        if typ == "response.output_audio.delta" and data.get("delta"):
            pcm = base64.b64decode(data["delta"])
            if self.out_rate != self.rate:
                pcm = resample_pcm16(pcm, self.out_rate, self.rate)
            x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
            start = max(self._sample_of(t), self._free)
            self._ensure(start + len(x))
            self._played[start - self._base:start - self._base + len(x)] = x
            self._free = start + len(x)
            self.played_s += len(x) / self.rate
        elif typ == "output_audio_buffer.cleared":
            now = self._sample_of(t)
            if now < self._free:                # what was queued is dropped, unplayed
                now = max(now, self._base)
                self._played[now - self._base:self._free - self._base] = 0.0
                self.played_s -= (self._free - now) / self.rate
                self._free = now

    def _ensure(self, end: int) -> None:
        """Room for speaker samples up to index ``end``."""
        n = end - self._base
        if n > len(self._played):
            self._played = np.concatenate([self._played, np.zeros(max(n - len(self._played), self.rate))])

    def _forget(self, before: int) -> None:
        """Samples before index ``before`` will not be heard again: a long session stays small."""
        drop = min(before - self._base, len(self._played)) - self.rate
        if drop > 0:
            self._played = self._played[drop:]
            self._base += drop

    def echo(self, start: int, n: int) -> np.ndarray:
        """The echo in mic samples [start, start + n)."""
        L = len(self._ir)
        lo, hi = start - self._delay - (L - 1), start - self._delay + n
        self._ensure(max(hi, self._base))
        seg = np.zeros(hi - lo)
        a, b = max(lo, self._base), max(hi, self._base)
        seg[a - lo:b - lo] = self._played[a - self._base:b - self._base]
        self._forget(lo)
        return np.convolve(seg, self._ir, mode="valid")

    def mix(self, start: int, frame: bytes) -> bytes:
        """The microphone frame with the echo and the room's noise added."""
        x = np.frombuffer(frame, dtype="<i2").astype(np.float64)
        with self._lock:
            echo = self.echo(start, len(x))
        y = x + echo + self._rng.normal(0.0, self._noise, len(x))
        return np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()


def room_from_env(value: str) -> Room | None:
    """"DELAY_MS,LEVEL_DB" (e.g. "120,-10", the load test's LOAD_ECHO) → a Room; empty → None."""
    if not value.strip():
        return None
    delay, level = (float(x) for x in value.split(","))
    return Room(delay_ms=delay, level_db=level)


def attach_echo(rt, mic, room: Room, out_rate: int | None = None) -> EchoSpeaker:
    """Route ``rt``'s received audio through a speaker whose echo ``mic`` picks
    up (the asyncio RealtimeClient or the blocking SyncRealtimeClient)."""
    rate = out_rate or rt.player.rate

    def sample_of(t: float) -> int:
        return int(round((t - mic.t0) * mic.rate * mic.speed)) if mic.t0 else 0

    speaker = EchoSpeaker(mic.rate, rate, room, sample_of)
    rt.taps.append(speaker.on_event)
    mic.mix = speaker.mix
    return speaker
