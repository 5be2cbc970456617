"""A voice starting over a loud echo, heard by its energy in the echo
canceller's output, before the VAD can hear it.

Why: when the user talks over an answer whose echo reaches the microphone as
loud as their voice, AEC3's double-talk suppression takes 10-45 dB off the
voice for up to ~0.5 s, and the VAD (150 ms of voiced frames) hears the user
only after it: barge-in under echo took 146-708 ms in the 250 ms / -6 dB room
on the stack (traced: docs/benchmarks.md, "Echo"). But AEC3 lets the voice's
first ~100 ms through before it clamps down: the output, at the residual
echo's -60 dBFS, jumps by 20-35 dB.

``EchoOnset`` is that rule, pure: fed the output energy of each 10 ms frame
the canceller's output replaces the mic in, it says when a run of ``RUN``
20 ms frames ``RISE_DB`` over the median of the last second (and above
``MIN_DBFS``) began. It is armed only after ``ARM_FRAMES`` of reference
played without a break: a canceller that has not converged lets the
first echo through, and after a pause the floor is the pause's silence, so
the resumed reply's echo looks like a voice. The parameters were chosen on
the stack and on its traces (docs/benchmarks.md): 20 dB, or arming after
1 s, paused replies falsely (3-5 times in ~5 min of answer in the -6 dB
rooms); 25 dB armed after 1.5 s fired 0 times on 941 s of traced echo, and
saw the voice -24 to 117 ms after its onset in 15 of 22 traced barge-ins.
The canceller reports it only while an echo is known (echo.py), and the
gateway pauses the reply on it (bargein.py) and resumes it if no speech
follows."""
from __future__ import annotations

import collections
import math
import statistics

# The rule's frames are 20 ms: two of the canceller's 10 ms frames.
RISE_DB = 25.0        # over the median level of the last FLOOR_FRAMES
RUN = 2               # frames in a row (40 ms)
FLOOR_FRAMES = 50     # one second
MIN_DBFS = -50.0      # and loud in itself
ARM_FRAMES = 150      # 10 ms frames of played reference in a row before the rule is armed (1.5 s)
FULL_SCALE = 32768.0 ** 2


class EchoOnset:
    def __init__(self) -> None:
        self._levels: collections.deque[float] = collections.deque(maxlen=FLOOR_FRAMES)
        self._pending: float | None = None      # energy of the first half of a 20 ms frame
        self._pending_t = 0.0
        self._run = 0
        self._run_t = 0.0
        self._played = 0                         # 10 ms frames of played reference in a row

    def push(self, t: float, energy: float, samples: int, played: bool) -> float | None:
        """One 10 ms frame of the canceller's output (its capture time ``t``, its
        energy, sum of squares over ``samples``), and whether the reference
        played in it. Returns the capture time a voice's run began, once, on
        the frame that completes the run; else None."""
        self._played = self._played + 1 if played else 0
        if self._pending is None:
            self._pending, self._pending_t = energy, t
            return None
        level = 10.0 * math.log10(max((self._pending + energy) / (2 * samples), 1e-3) / FULL_SCALE)
        t0, self._pending = self._pending_t, None
        floor = statistics.median(self._levels) if len(self._levels) >= 10 else None
        self._levels.append(level)
        if floor is None or level <= max(MIN_DBFS, floor + RISE_DB):
            self._run = 0
            return None
        self._run += 1
        if self._run == 1:
            self._run_t = t0
        if self._run == RUN and self._played >= ARM_FRAMES:
            return self._run_t
        return None
