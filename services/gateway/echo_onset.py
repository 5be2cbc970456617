"""A voice starting over a loud echo, heard by its energy in the echo
canceller's output, before the VAD can hear it.

Why: when the user talks over an answer whose echo reaches the microphone as
loud as their voice, AEC3's double-talk suppression takes 10-45 dB off the
voice for up to ~0.5 s, and the VAD (150 ms of voiced frames) hears the user
only after it: barge-in under echo took 146-708 ms in the 250 ms / -6 dB room
on the stack (traced: docs/benchmarks.md, "Echo"). But AEC3 lets the voice's
first ~100 ms through before it clamps down: the output, at the residual
echo's -60 dBFS, jumps by 20-35 dB. Offline on those six traces, a run of two
20 ms frames 20 dB over the median of the second before heard the user
-3 to 75 ms after the onset in five and at 334 ms in one, and fired once in
211 s of echo alone.

``EchoOnset`` is that rule, pure: fed the output energy of each 10 ms frame
the canceller's output replaces the mic in, it says when a run began. It is
armed only after ``ARM_FRAMES`` of reference played without a break: a
canceller that has not converged lets the first echo through (two traces
fired 0.4 s into a session's first answer), and after a pause the floor is
the pause's silence, so the echo of the resumed reply looked like a voice
(on the stack, with the rule armed once per canceller, a reply was paused
again at each resume, and there were 5 false pauses in 5.2 min of answer in
the -6 dB rooms, 2026-12-06). At 20 dB over the floor, 4 of the 35 traced
stretches of that run fired on echo alone (5 times); at 25 dB none did, and the
voice was still seen 17-155 ms after its onset in 5 of 7 barge-ins (346
and 595 ms in two where AEC3 held the voice from its first frame). Armed after
1 s of playing, the 25 dB rule still fired on the stack's next run, 1.0-1.4
s into a stretch (3 false pauses in 5.5 min of answer, and 2 in barge-in
sessions before the voice: AEC3 still converging, the floor holding the
answer's leading silence); simulated over the 17 barge-in and 46 other
traced stretches of four runs (941 s of echo), armed after 1.5 s it fires
on echo alone 0 times (1 s: 5) and sees the voice as soon (-24 to 117 ms
after the onset in 14 of 22 barge-ins, 215-555 ms in 5, not at all in 3).
It reports only while an echo is known (echo_detect.py: "echo", from ~1.7
s into a loud answer; at every traced barge-in it was): with none known
yet (a headset early in a session) the VAD hears the user unhindered, and
a click or a cup would pause the reply for nothing. The gateway pauses
the reply on it (bargein.py) and resumes it if no speech follows."""
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
