"""Is there an echo at all? The echo canceller's output replaces the
microphone audio unless this detector has found that the microphone does
not carry the played audio back.

Why: AEC3 assumes an echo until it has learned otherwise. With no echo at
all (a headset, a phone at the ear, a client with its own canceller) it
suppresses the user's voice whenever the answer plays, for the first seconds
of a session: offline, a user's first 400 ms over the answer came out 20-67
dB down during the first 5 s of playing; on the stack a barge-in over the
first answer was heard 2.4 s late instead of 0.24 s (docs/benchmarks.md).

The test is cheap: the energy envelope of the microphone (10 ms frames, log)
correlates with the reference's at some delay of 0-500 ms when the played
audio comes back. Checked every 100 ms over the last second, when the
reference played at least half of it. Measured on the project's speech
(60-400 ms delays, user talking over it or not): with an echo at -40 dB or
louder the best correlation reaches 0.8-0.98 (median 0.6-0.92), with no echo
it stays below 0.72 (median 0.2). So: above ``HIGH`` once, there is an echo
(kept for the session: the room does not change, and AEC3 itself goes
transparent if the echo goes away); below ``LOW`` for ``LOW_RUN`` checks in a
row before that, there is none (the canceller keeps learning, its output is
not used) until a check says otherwise. Until either, the output is used:
the issue at hand is the assistant interrupting itself on speakers.

A low correlation counts towards "none" only while the microphone is
*still*: its level varies by less than ``STILL_DB`` over the window (a
room's steady noise). A microphone with speech's ups and downs and no
correlation is the user talking over the answer, and an echo under that
voice cannot be told from none: measured on the project's speech, a user
talking over a real echo (-6 to -30 dB, 60-400 ms) from 0.2, 0.8 or 1.5 s
into the answer took the detector to "none" in 22 of 30 cases, 1.9-4.5 s
in, until the user stopped (the canceller's output unused meanwhile, and the
echo-words guard off, bargein.may_hear_echo); now in none. While the user
talks the state stays as it was; the quiet path or a still microphone
decide once they stop. The price: with no echo at all, a user talking from
the answer's start is known to have none only ~1 s after they stop (3.8-6.1
s in, was 1.9 s), and AEC3 may duck their voice meanwhile.

A quicker "none": a microphone that stays quiet (40 dB below the played
voice, or below a quiet room's noise) while the answer plays, for long enough that an echo at any lag up to
``MAX_LAG`` would have had loud played audio to carry (``QUIET_COVER`` frames
at each lag), carries no echo worth cancelling. A played frame counts as
loud only if its echo at -35 dB would reach that quiet floor
(``LOUD_MIN``): an answer that starts softly, whose echo would be lost in
the floor, proves nothing (before, the rule said "none" in such rooms with
a -35 dB echo). By construction an echo at about -32 dB or louder (after
up to 350 ms) can never look quiet, even split over two frames; at -35 dB
it held in every room measured (docs/benchmarks.md). An answer played so
softly that no frame reaches ``LOUD_MIN`` (~ -24 dBFS) never gets the quick
"none", and waits for the correlation (~2 s). A listener who hears ~0.6 s
of the answer in silence before talking over it is then heard whole, instead
of ducked by AEC3 for the first two seconds of playing (the correlation
needs a full window and a run of low checks). A client that sends no audio
while it listens gives nothing to learn from, and waits for the correlation."""
from __future__ import annotations

import collections

import numpy as np

from services.gateway.echo_first_voice import FirstVoice

WINDOW = 100          # frames (1 s) compared
MAX_LAG = 50          # frames (500 ms): AEC3 follows echoes up to ~400 ms
EVERY = 10            # frames between two checks (100 ms)
HIGH = 0.8            # correlation from which the mic carries the played audio
LOW = 0.4             # ... below which, LOW_RUN checks in a row, it does not
LOW_RUN = 5
STILL_DB = 3.0        # std of the mic's frame level (dB) over the window under which it is still
HIGH_RUN = 3          # checks in a row above HIGH: speech over speech reaches it by chance, once
FLOOR = 1e5           # frame energy (sum of int16 squares) below which a frame is silence (~ -65 dBFS)
QUIET_DB = 40.0       # a mic frame this far below the played voice's level carries no echo worth cancelling,
QUIET_FLOOR = 2e5     # ... nor one below this energy (~ -59 dBFS: a quiet room's noise)
LOUD_DB = 0.0         # played frames at or above the played voice's median level count as loud,
LOUD_MIN = QUIET_FLOOR * 10.0 ** (35.0 / 10.0)   # ... if their echo at -35 dB would not be quiet (~ -24 dBFS)
QUIET_COVER = 6       # loud played frames needed at every lag for a quiet mic to say "none"
QUIET_MIN = 10        # mic frames (100 ms) the quiet run needs at least
QUIET_MAX_LAG = 35    # frames (350 ms): the lags a quiet run must cover (an echo later than this
                      # arrives before the run covers it, unless the answer starts with silence)
ONSET_RISE = 1.0      # log10 units (10 dB): the mic's last quarter-window this far above its first
                      # holds an onset, which no correlation check judges (see _onset_in_window)


class EchoDetector:
    def __init__(self, first_voice: bool = False) -> None:
        self._mic: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self._ref: collections.deque[float] = collections.deque(maxlen=WINDOW + MAX_LAG)
        self._n = 0
        self.state = "unknown"   # unknown → echo (kept) | none (→ echo if seen later)
        self._lows = self._highs = 0
        self.best = 0.0          # the latest best correlation, for tests and logs
        # A voice early in the first answer, before a decision (echo_first_voice.py), if asked for.
        self._first = FirstVoice() if first_voice else None
        self.voice_onset: int | None = None   # frames before the latest one that voice began, until taken

    @property
    def use_canceller(self) -> bool:
        return self.state != "none"

    @property
    def raw_voice(self) -> bool:
        """Whether the raw mic is to replace the canceller's output although
        it runs: a voice heard early in the first answer (echo_first_voice.py)."""
        return self.state == "unknown" and self._first is not None and self._first.raw

    def push(self, mic_energy: float, ref_energy: float) -> bool:
        """One 10 ms frame's energies; whether the canceller's output is to be used."""
        self._mic.append(float(np.log10(mic_energy + FLOOR)))
        self._ref.append(float(np.log10(ref_energy + FLOOR)))
        self._n += 1
        if self._first is not None and self.state == "unknown" and (self._first.raw or not self._first.fired):
            ago = self._first.push(mic_energy, ref_energy)
            if ago is not None:
                self.voice_onset = ago
        if self.state == "unknown" and self._n % EVERY == 0 and self._quiet_through_playing():
            self.state = "none"
        elif self.state != "echo" and self._n % EVERY == 0 and len(self._ref) == WINDOW + MAX_LAG:
            checked = None if self._onset_in_window() else self._check()
            if checked is not None:
                best, still = checked
                self.best = best
                self._lows = self._lows + 1 if best < LOW and still else 0
                self._highs = self._highs + 1 if best > HIGH else 0
                if self._highs >= HIGH_RUN:
                    self.state = "echo"
                elif self._lows >= LOW_RUN:
                    self.state = "none"
        return self.use_canceller

    def _quiet_through_playing(self) -> bool:
        """Whether the mic's latest quiet run covers loud played audio at every lag."""
        ref = 10.0 ** np.asarray(self._ref) - FLOOR          # back to energies (log10(e + FLOOR) above)
        played = ref[ref > FLOOR]
        if len(played) < QUIET_COVER:
            return False
        level = float(np.median(played))
        mic = 10.0 ** np.asarray(self._mic) - FLOOR
        quiet = mic <= max(level * 10.0 ** (-QUIET_DB / 10.0), QUIET_FLOOR)
        run = len(quiet) - (int(np.flatnonzero(~quiet)[-1]) + 1 if not quiet.all() else 0)
        if run < QUIET_MIN:
            return False
        loud = np.concatenate([[0], np.cumsum(ref >= max(level * 10.0 ** (-LOUD_DB / 10.0), LOUD_MIN))])
        end = len(ref)                 # ref[end - 1] is the played frame at the latest mic frame's time
        for lag in range(QUIET_MAX_LAG + 1):
            hi, lo = end - lag, max(0, end - lag - run)
            if hi <= 0 or loud[hi] - loud[lo] < QUIET_COVER:
                return False
        return True

    def _onset_in_window(self) -> bool:
        """Whether the mic rose within the window (the median level of its
        last quarter 10 dB over its first's, levels over the silence floor):
        a voice starting, or an echo's start. The
        reference rose when the answer began too, and two such steps
        correlate highly at the lag between them whatever made the mic's:
        on the stack a listener known to have no echo ("none", from the
        quiet rule in the first answer) who talked 0.45 s into the second
        answer turned the detector to "echo" within ~0.3 s, and AEC3 took
        over and ducked the voice (bench_e2e, second-answer barge-ins: 435-645
        ms against ~150). The step there was the clip's lead-in noise, ~12 dB
        over digital silence on this scale: 20 dB missed it (replayed from six
        sessions' echo traces: 5 of 6 flipped at 20 dB, 0 at 10 or 5). The
        check waits until the step has left the window (< 1 s): an echo is then
        judged on how the mic follows the played audio's ups and downs, not on
        one step. The price: a changed room (a headset taken off) is seen up
        to ~1 s later."""
        mic = np.asarray(self._mic)
        q = len(mic) // 4
        return q > 0 and float(np.median(mic[-q:]) - np.median(mic[:q])) > ONSET_RISE

    def _check(self) -> tuple[float, bool] | None:
        """The best correlation over the lags and whether the mic was still, or
        None when the reference was mostly silent."""
        ref = np.asarray(self._ref)
        if np.mean(ref[-WINDOW:] > np.log10(FLOOR) + 1.0) < 0.5:
            return None
        mic = np.asarray(self._mic)
        still = float(mic.std()) * 10.0 < STILL_DB       # log10 units -> dB
        mic = mic - mic.mean()
        # Row k: the reference as it was k frames before each mic frame.
        idx = np.arange(WINDOW)[None, :] + (MAX_LAG - np.arange(MAX_LAG + 1))[:, None]
        lagged = ref[idx]
        lagged = lagged - lagged.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(lagged, axis=1) * np.linalg.norm(mic)
        if not norms.any():
            return 0.0, still
        return float((lagged @ mic / np.where(norms > 0, norms, np.inf)).max()), still
