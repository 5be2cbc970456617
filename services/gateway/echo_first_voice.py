"""A voice early in the first answer, before the echo detector has decided:
heard on the raw microphone, when the silence before it already ruled out
an echo at every delay it could have come back with.

Why: until echo_detect.py knows whether the microphone carries the played
audio back, the echo canceller's output goes to VAD and ASR, and AEC3, not
converged, takes a near-end voice for echo: on the stack (bench_e2e, a
listener with no echo talking 0.2-0.7 s into a new session's first answer)
it took 40-70 dB off the voice for its first second, and the barge-in came
619-1156 ms after the voice began (2026-12-07 traces; ~165 ms with the
canceller off). The quiet rule of echo_detect.py cannot help: the voice (or
the noise just before it) ends the quiet stretch before loud played audio
has covered every delay up to 350 ms.

The evidence used here is weaker and enough for one decision: while the
answer played, the microphone was quiet (under the played voice's median
level - 40 dB, or a quiet room's noise) in some frames. The echo, at -30 dB
or louder (with 4 dB to spare for a reverberant echo's spread from frame to
frame) and a delay ``d``, of a played frame at most 6 dB under that median
would have made the frame ``d`` later loud; so each delay at which
``COVER`` such played frames were followed by a quiet mic frame is ruled out
for such an echo, whatever came between (the noise in a clip's lead-in, a
breath). Once every
delay up to ``CLEARED_LAG`` (350 ms, the bound echo_detect.py's quiet rule
uses too) is, a voice-loud onset (``RUN``
frames over -40 dBFS, 15 dB over the frames before) is no echo of the answer unless the echo comes back
later than that, and it is reported (the gateway pauses the answer at once,
bargein.echo_onset) and the raw microphone replaces the canceller's output
until the answer stops (the VAD hears the user whole; AEC3 keeps learning).

By construction an echo at -30 dB or louder with a delay up to 350 ms
leaves no quiet frame at its own delay after a loud played frame, so it can
never fire the rule; the echo bench's rooms (60-250 ms) never reach it. A room whose echo
comes back later than ~350 ms can pause the first answer once for up to a
second (ECHO_ONSET_RESUME_S; the echo-words guard keeps it from becoming a
barge-in): the rule fires at most once per session. A room whose noise is
over the quiet floor never has a quiet frame, and is as before.

Pure; fed one 10 ms frame's energies at a time by echo_detect.py while it
has not decided."""
from __future__ import annotations

import collections

import numpy as np

FRAME = 160
VOICE_MIN = FRAME * 32768.0 ** 2 * 10.0 ** (-40.0 / 10.0)   # frame energy of -40 dBFS
RUN = 3                # 10 ms frames in a row over VOICE_MIN: a voice's onset (not a click) ...
RISE_DB = 15.0         # ... each this far over the median of the BEFORE frames before the run (not
BEFORE = 20            # the noise or breath ahead of a voice: clients/speech.py's own measure)
CLEARED_LAG = 35       # frames (350 ms, echo_detect.QUIET_MAX_LAG): every delay up to this ruled
                       # out before an onset counts
COVER = 3              # loud played frames followed by a quiet mic frame at each delay
LOUD_DB = 6.0          # played frames at most this far under the played median count as loud
QUIET_DB = 40.0        # quiet: mic frames this far under the played median ...
QUIET_FLOOR = 2e5      # ... or under this energy (a quiet room's noise; echo_detect.QUIET_FLOOR)
LOUD_MIN = QUIET_FLOOR * 10.0 ** (34.0 / 10.0)   # a loud frame's echo at -34 dB is over the floor
QUIET_MIN = 10         # quiet mic frames needed at least
GAP = 20               # silent reference frames that say the answer stopped (paused or cancelled)
NO_STOP = 30           # frames after the onset by which the answer must have stopped, else raw ends


def cleared_lag(mic: np.ndarray, ref: np.ndarray) -> int:
    """The longest delay (frames) up to which every delay is ruled out for a
    -30 dB echo by the quiet frames of ``mic``; -1 if none. ``mic`` and ``ref``
    are frame energies; ``ref[-1]`` is the frame played at ``mic[-1]``'s time
    (``ref`` may reach further back)."""
    played = ref[ref > 0]
    if len(played) < COVER:
        return -1
    level = float(np.median(played))
    quiet = (mic <= max(level * 10.0 ** (-QUIET_DB / 10.0), QUIET_FLOOR)).astype(np.int32)
    if quiet.sum() < QUIET_MIN:
        return -1
    loud = (ref >= max(level * 10.0 ** (-LOUD_DB / 10.0), LOUD_MIN)).astype(np.int32)
    start = len(ref) - len(mic)                    # ref[start + i] played at mic[i]'s time
    lag = -1
    while lag + 1 <= start + len(mic) - 1:
        d = lag + 1                                # mic[i] against ref[start + i - d], where that exists
        first = max(0, d - start)
        if int(quiet[first:] @ loud[start + first - d:len(ref) - d]) < COVER:
            break
        lag = d
    return lag


class FirstVoice:
    """One session's rule: fires once, then says whether the raw mic is in use."""

    def __init__(self) -> None:
        # The last second of mic energies and 1.5 s of the reference's, frame by frame.
        self._mic: collections.deque[float] = collections.deque(maxlen=100)
        self._ref: collections.deque[float] = collections.deque(maxlen=150)
        self.fired = False     # at most once per session
        self.raw = False       # the raw mic replaces the canceller's output
        self._run = 0
        self._floor = 0.0
        self._since = self._gap = 0
        self._stopped = False

    def push(self, mic_e: float, ref_e: float) -> int | None:
        """One 10 ms frame's energies (sums of squares; 0 for a reference that
        did not play). Returns how many frames before this one the voice
        began, once."""
        self._mic.append(mic_e)
        self._ref.append(ref_e)
        if self.raw:
            self._follow(ref_e)
            return None
        if self.fired:
            return None
        if mic_e < VOICE_MIN:
            self._run = 0
            return None
        if self._run == 0:
            # The background the onset must rise over: the frames before it.
            before = np.asarray(self._mic)[-1 - BEFORE:-1]
            self._floor = float(np.median(before)) if len(before) else 0.0
        self._run = self._run + 1 if mic_e >= self._floor * 10.0 ** (RISE_DB / 10.0) else 0
        if self._run != RUN or ref_e <= 0:
            return None
        m, r = np.asarray(self._mic)[:-RUN], np.asarray(self._ref)[:-RUN]
        if len(m) == 0 or cleared_lag(m, r) < CLEARED_LAG:
            return None
        self.fired = self.raw = True
        self._since = self._gap = 0
        self._stopped = False
        return RUN - 1

    def _follow(self, ref_e: float) -> None:
        """The raw mic lasts until the answer plays again after stopping, or
        ends 0.5 s after the onset if the answer did not stop within 0.3 s
        (no pause was possible: interruptions off)."""
        self._since += 1
        self._gap = self._gap + 1 if ref_e <= 0 else 0
        self._stopped = self._stopped or self._gap >= GAP
        if (self._stopped and ref_e > 0) or (not self._stopped and self._since >= NO_STOP + GAP):
            self.raw = False
