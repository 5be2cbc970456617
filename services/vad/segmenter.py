"""Turning per-frame speech probabilities into speech start/stop decisions.

Pure logic, no model: tests feed it scripted probability sequences and check
hysteresis and minimum durations to the millisecond. Times are audio times in
ms counted from the stream's first sample; frame ``i`` covers
``[i * frame_ms, (i + 1) * frame_ms)``.

The rules follow silero's own VADIterator so thresholds mean what silero users
expect:

* idle: a frame with ``prob >= threshold`` opens a candidate whose onset is
  that frame's start. The candidate survives frames above the lower
  (hysteresis) threshold ``threshold - 0.15`` and dies on a frame at or below
  it. As soon as the candidate has lasted ``min_speech_ms`` (counted to the
  end of the current frame) the start is decided, on that very frame, so a
  barge-in is seen as early as the settings allow.
* speech: a frame at or below the lower threshold opens a silence run; only a
  frame at or above ``threshold`` closes it again (frames in between count as
  silence, as in silero). Once the run has lasted ``min_silence_ms`` the stop
  is decided. ``audio_ms`` is the end of the last *voiced* frame, one with
  ``prob >= threshold``: frames between the two thresholds keep a segment
  open but are not counted as speech, because silero's recurrent state makes
  its probability decay for a frame or two after the sound has stopped.
* quiet frames (energy.py: within a few dB of the stream's noise floor,
  told by the caller; never at low SNR): silero's probability stays high for
  110-320 ms after the sound stops. A quiet frame is not voiced whatever its
  probability, and ``QUIET_FRAMES`` of them in a row (96 ms: longer than a
  stop consonant's closure) give the pause. So ``audio_ms`` (of the pause
  and the stop) is where the sound ended, not where silero's state let go of
  it, and the pause comes that much sooner. The stop itself is decided on
  silero's probability alone, exactly as without the energy: letting quiet
  frames start or keep a silence run split segments at breaths and commas
  (short, unreliable finals each redone on the 30 s window; make capacity,
  2026-12-01).
* pause (only with ``pause_events``): in speech, the first frame below
  ``threshold`` (or the ``QUIET_FRAMES``-th quiet one) after a voiced frame
  gives a SpeechPaused at the voiced end:
  the speech may have ended there. It decides nothing (a voiced frame
  before the stop just continues the segment); a client may start work
  that needs the end of speech (a provisional transcription) a
  min_silence_ms earlier than the stop. The stop that follows without a
  voiced frame in between has the same ``audio_ms``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

HYSTERESIS = 0.15
QUIET_FRAMES = 3    # quiet frames in a row that are silence, not a consonant's closure


@dataclasses.dataclass(frozen=True)
class SegmenterParams:
    """Per-stream detection settings (already defaulted and validated)."""

    threshold: float = 0.5
    min_speech_ms: int = 150
    min_silence_ms: int = 200
    prefix_padding_ms: int = 300
    pause_events: bool = False
    end_of_turn: bool = False    # score pauses with the end-of-turn model (engine.VadStream)

    def __post_init__(self) -> None:
        if not (0.0 < self.threshold < 1.0) or math.isnan(self.threshold):
            raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {self.threshold}")
        for name in ("min_speech_ms", "min_silence_ms", "prefix_padding_ms"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")

    @property
    def low_threshold(self) -> float:
        return max(self.threshold - HYSTERESIS, 0.01)


@dataclasses.dataclass(frozen=True)
class SpeechStart:
    audio_ms: int         # onset: start of the first voiced frame of the segment
    padded_start_ms: int  # onset minus prefix padding, clamped at 0
    decided_at_ms: int    # end of the frame on which the start was decided


@dataclasses.dataclass(frozen=True)
class SpeechStop:
    audio_ms: int         # end of the last voiced frame
    decided_at_ms: int    # end of the frame on which the stop was decided
    # The end-of-turn score of the pause this stop confirms (a Future of a
    # probability, computed on a worker thread), when the stream asked for one.
    turn: Any = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class SpeechPaused:
    audio_ms: int         # end of the last voiced frame: speech may have ended here
    decided_at_ms: int    # end of the first unvoiced frame after it


Event = SpeechStart | SpeechStop | SpeechPaused


class Segmenter:
    """One stream's start/stop state machine; feed it one probability per frame."""

    def __init__(self, params: SegmenterParams, frame_ms: float = 32.0) -> None:
        self.params = params
        self.frame_ms = frame_ms
        self.frames = 0
        self.in_speech = False
        self._onset: float | None = None        # candidate or confirmed onset
        self._silence_from: float | None = None  # start of the current silence run
        self._voiced_end: float = 0.0            # end of the last voiced frame (>= threshold, not quiet)
        self._paused = False                      # a pause was reported since the last voiced frame
        self._quiet_from: float | None = None     # start of the current run of quiet frames

    def _ms(self, frames: int) -> float:
        return frames * self.frame_ms

    def push(self, prob: float, quiet: bool = False) -> Event | None:
        """Classify the next frame (silero's ``prob``; ``quiet``: its level is at
        the noise floor, energy.py); return the event decided on it, if any."""
        p = self.params
        start, end = self._ms(self.frames), self._ms(self.frames + 1)
        self.frames += 1
        if not self.in_speech:
            if self._onset is None:
                if prob < p.threshold:
                    return None
                self._onset = start
                self._voiced_end = end
            elif prob <= p.low_threshold:
                self._onset = None
                return None
            elif prob >= p.threshold:
                self._voiced_end = end
            if end - self._onset >= p.min_speech_ms:
                self.in_speech = True
                onset = round(self._onset)
                return SpeechStart(onset, max(0, onset - p.prefix_padding_ms), round(end))
            return None
        if prob >= p.threshold:
            # The stop is silero's call alone: a quiet frame it calls speech ends a
            # silence run too (else a breath after a dip became a segment of its own).
            self._silence_from = None
            if not quiet:
                self._voiced_end, self._paused, self._quiet_from = end, False, None
                return None
        if not quiet:
            self._quiet_from = None
        elif self._quiet_from is None:
            self._quiet_from = start
        if self._silence_from is None and prob <= p.low_threshold:
            self._silence_from = start
        if self._silence_from is not None and end - self._silence_from >= p.min_silence_ms:
            return self._stop(round(end))
        quiet_run = self._quiet_from is not None and end - self._quiet_from >= QUIET_FRAMES * self.frame_ms - 1e-6
        if prob >= p.threshold and not quiet_run:
            return None       # silero hears speech and the energy is not sure yet
        if p.pause_events and not self._paused:
            self._paused = True
            return SpeechPaused(round(self._voiced_end), round(end))
        return None

    def finish(self) -> SpeechStop | None:
        """End of stream: close an open segment so every start has its stop."""
        if not self.in_speech:
            return None
        return self._stop(round(self._ms(self.frames)))

    def _stop(self, decided_at: int) -> SpeechStop:
        self.in_speech, self._onset, self._silence_from, self._paused = False, None, None, False
        self._quiet_from = None
        return SpeechStop(round(self._voiced_end), decided_at)
