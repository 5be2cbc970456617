"""Where the speech is in a clip, from its energy alone.

Benchmarks measure from the *audio*, not from the server's VAD: voice-to-voice
latency starts at the last voiced sample the user produced, barge-in reaction at
the first voiced sample of the interruption. A VAD that fires late must show up
as latency, so the reference cannot be the VAD under test.

Method: 10 ms frames, energy in dBFS; the noise floor is the clip's 10th
percentile frame; a frame is voiced when it is 15 dB above the floor (and above
-60 dBFS); runs shorter than 30 ms are ignored as clicks."""
from __future__ import annotations

import dataclasses

import numpy as np

FRAME_MS = 10
ABOVE_FLOOR_DB = 15.0
MIN_RUN_FRAMES = 3
ABS_FLOOR_DB = -60.0


@dataclasses.dataclass(frozen=True)
class VoicedSpan:
    first_sample: int   # first voiced sample
    last_sample: int    # last voiced sample (inclusive)
    rate: int

    @property
    def start_ms(self) -> float:
        return self.first_sample * 1000.0 / self.rate

    @property
    def end_ms(self) -> float:
        return (self.last_sample + 1) * 1000.0 / self.rate


def frame_db(pcm: bytes, rate: int, frame_ms: int = FRAME_MS) -> np.ndarray:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    n = max(1, rate * frame_ms // 1000)
    usable = len(x) // n * n
    frames = x[:usable].reshape(-1, n)
    return 10.0 * np.log10((frames ** 2).mean(axis=1) + 1e-12)


def voiced_mask(pcm: bytes, rate: int) -> np.ndarray:
    db = frame_db(pcm, rate)
    if db.size == 0:
        return np.zeros(0, dtype=bool)
    thr = max(float(np.percentile(db, 10)) + ABOVE_FLOOR_DB, ABS_FLOOR_DB)
    mask = db > thr
    # drop runs shorter than MIN_RUN_FRAMES (clicks, pops)
    out = mask.copy()
    i = 0
    while i < len(mask):
        if mask[i]:
            j = i
            while j < len(mask) and mask[j]:
                j += 1
            if j - i < MIN_RUN_FRAMES:
                out[i:j] = False
            i = j
        else:
            i += 1
    return out


def voiced_span(pcm: bytes, rate: int) -> VoicedSpan:
    """First and last voiced sample of a clip; ValueError if nothing is voiced."""
    mask = voiced_mask(pcm, rate)
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        raise ValueError("no voiced frames in clip")
    n = max(1, rate * FRAME_MS // 1000)
    total = len(pcm) // 2
    return VoicedSpan(int(idx[0]) * n, min(total, (int(idx[-1]) + 1) * n) - 1, rate)


def longest_pause_ms(pcm: bytes, rate: int) -> float:
    """Longest unvoiced gap between the first and last voiced frame."""
    mask = voiced_mask(pcm, rate)
    idx = np.flatnonzero(mask)
    if idx.size < 2:
        return 0.0
    gaps = np.diff(idx) - 1
    return float(gaps.max()) * FRAME_MS
