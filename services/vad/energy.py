"""Where speech ends, by its energy: silero's probability stays above the
threshold for 110-320 ms after the sound has stopped (its recurrent state;
measured on the project's clips, docs/benchmarks.md: 182 ms at p50), so a
stop (and the pause that starts the final transcription) decided on the
probability alone comes that much late, and every turn waits for it.

``EnergyGate`` tells the segmenter which frames are *quiet*: within
``above_floor_db`` of the stream's noise floor. A frame silero still calls
speech but that is quiet is its hangover, not speech (segmenter.py). The
rule only applies where the energy can tell: once the floor is known (the
median level of the last few seconds of frames silero called non-speech,
digital silence aside: zeros between a client's clips are no room's noise)
and while the current utterance is at least ``min_snr_db`` louder than it;
in noise, echo or at a stream's start every frame counts as not quiet and
the probability decides alone, as before.

Pure arithmetic on frame levels; tests feed it levels (tests/unit/test_vad_energy.py)."""
from __future__ import annotations

import collections
import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class EnergyParams:
    above_floor_db: float = 10.0   # a frame this close to the floor is quiet
    min_snr_db: float = 20.0       # the utterance's loudest frame over the floor, for the rule to apply
    floor_frames: int = 156        # non-speech frames the floor is the median of (5 s of 32 ms)
    # Before that many, no floor: nothing is quiet. 8 frames (256 ms) is about
    # the noise a clip or a person leaves before their first word: with 15 a
    # stream's first utterance mostly ended on silero's hangover (speech end
    # 124-302 ms after the sound's end, against 3-190 ms once the floor is
    # known; docs/capacity-rechecks.md, re-check 15).
    min_floor_frames: int = 8
    digital_silence_db: float = -90.0   # below this a frame is no microphone's noise: quiet, never the floor

    def __post_init__(self) -> None:
        if self.above_floor_db <= 0 or self.min_snr_db <= self.above_floor_db:
            raise ValueError("need 0 < above_floor_db < min_snr_db, got "
                             f"{self.above_floor_db} and {self.min_snr_db}")


def frame_db(frame: np.ndarray) -> float:
    """Level of a float frame (-1..1) in dB full scale (digital silence: -120)."""
    power = float(np.mean(frame.astype(np.float64) ** 2)) if frame.size else 0.0
    return 10.0 * math.log10(power + 1e-12)


class EnergyGate:
    def __init__(self, params: EnergyParams = EnergyParams()) -> None:
        self.params = params
        self._floor: collections.deque[float] = collections.deque(maxlen=params.floor_frames)
        self._speech_db: float | None = None   # the current utterance's loudest voiced frame
        self._floor_db: float | None = None      # median of _floor, recomputed only when it changes

    @property
    def floor_db(self) -> float | None:
        return self._floor_db

    def quiet(self, db: float, prob: float, threshold: float, low_threshold: float,
              in_speech: bool) -> bool:
        """Whether this frame (level ``db``, silero ``prob``) is quiet; updates the
        floor and the utterance's level."""
        p = self.params
        if db < p.digital_silence_db:
            return in_speech       # zeros (a client's padding, a muted track) are never speech's sound
        if prob <= low_threshold:
            self._floor.append(db)
            if len(self._floor) >= p.min_floor_frames:
                self._floor_db = float(np.median(self._floor))
            if not in_speech:
                self._speech_db = None    # between utterances: the next one sets its own level
        floor = self._floor_db
        if prob >= threshold and (floor is None or db >= floor + p.above_floor_db):
            self._speech_db = db if self._speech_db is None else max(self._speech_db, db)
        if floor is None or self._speech_db is None or self._speech_db - floor < p.min_snr_db:
            return False
        return db < floor + p.above_floor_db
