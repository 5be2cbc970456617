"""Acoustic echo cancellation of one session's microphone audio, with the
assistant's own audio, as the listener's speaker played it, as reference.

Why: on laptop speakers or a phone on speaker the assistant's voice comes
back into the microphone; the VAD hears it as the user and the assistant
interrupts itself. Browsers only cancel audio played through an
RTCPeerConnection, and other Realtime clients cancel nothing, but the gateway
knows what it sent and when it played (playout.py), so it cancels the echo
itself before the audio reaches VAD and ASR.

The canceller is WebRTC's AEC3 (the ``livekit`` wheel's AudioProcessingModule)
on 10 ms frames at 16 kHz. Measured offline (bench/bench_echo_canceller.py,
docs/benchmarks.md): 23-27 dB echo return loss enhancement for echo at -10
to -6 dB with 60-400 ms delay and a reverberant tail, near-end speech kept,
about 10 ms of CPU per second of audio (0.1 ms per frame), so it runs inline
on the event loop. Its delay estimator finds the echo up to ~400 ms after the
reference (not at 600 ms): echo_ref.py feeds the reference at the moment the
server believes the client played it, which is always earlier than the echo.

Its output replaces the microphone audio unless echo_detect.py has found
that there is no echo (a headset): AEC3 would duck the user's voice there,
and is then not run at all (its CPU saved; it starts afresh if an echo is
seen later). Before it has decided, a voice heard on the raw mic early in
the first answer, when the silence before it ruled out an echo within 350
ms, is reported (the gateway pauses the answer) and the raw mic is used
until the answer plays again (echo_first_voice.py).

Pure and per session: ``process`` takes mic audio with the capture time of
its first sample and a reference source; no IO, no clock of its own. Active
only while the reference plays and for ``tail_ms`` after (the echo's delay
and reverberation); otherwise audio passes through untouched, at no cost."""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from services.gateway.echo_detect import EchoDetector
from services.gateway.echo_onset import EchoOnset

if TYPE_CHECKING:
    from services.gateway.echo_trace import EchoTrace

RATE = 16000
FRAME = 160                     # samples in one 10 ms APM frame
FRAME_BYTES = FRAME * 2
FRAME_S = FRAME / RATE
TAIL_MS = 600.0                 # > the longest echo delay AEC3 follows (~400 ms) + reverberation


class Reference(Protocol):
    def frame(self, t: float) -> bytes | None:
        """The 10 ms of 16 kHz PCM the speaker played from clock time ``t``, or None for silence."""


class Apm(Protocol):
    def process_reverse(self, pcm: bytes) -> None: ...

    def process(self, pcm: bytes) -> bytes: ...


class WebRtcApm:
    """AEC3 with a high-pass filter; no noise suppression or gain control (the
    VAD and ASR were tuned on unprocessed audio)."""

    def __init__(self) -> None:
        from livekit import rtc

        self._rtc = rtc
        self._apm = rtc.AudioProcessingModule(echo_cancellation=True, noise_suppression=False,
                                              high_pass_filter=True, auto_gain_control=False)

    def process_reverse(self, pcm: bytes) -> None:
        self._apm.process_reverse_stream(self._rtc.AudioFrame(bytearray(pcm), RATE, 1, FRAME))

    def process(self, pcm: bytes) -> bytes:
        frame = self._rtc.AudioFrame(bytearray(pcm), RATE, 1, FRAME)
        # The delay is found by AEC3's own estimator; 0 says "no hint".
        self._apm.set_stream_delay_ms(0)
        self._apm.process_stream(frame)
        return frame.data.tobytes()


def warm() -> None:
    """Load the canceller's library now (importing it takes ~0.3 s, making the
    first canceller ~8 ms): at startup, not on the event loop when the first
    session's first answer starts to play."""
    WebRtcApm()


def _energy(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    return float(np.dot(x, x))


class EchoCanceller:
    """One session's canceller. ``process`` returns as many samples as it was
    given over time; while active it holds back less than one frame."""

    def __init__(self, make_apm: Callable[[], Apm] = WebRtcApm, tail_ms: float = TAIL_MS,
                 onsets: bool = False) -> None:
        self._make_apm = make_apm
        # A voice over a loud echo, by its energy in the output (echo_onset.py), if asked for.
        self._onsets = onsets
        self._onset: EchoOnset | None = None
        self.voice_at: float | None = None   # capture time of the latest such voice, until taken
        self._apm: Apm | None = None     # made on first use: a session never played to costs nothing
        self.tail_s = tail_ms / 1000.0
        self._held = bytearray()         # < 1 frame of mic audio waiting for the rest of its frame
        self.active = False
        self._last_ref_t = -math.inf     # capture time of the latest frame with reference audio
        # Totals for metrics and tests: frames processed, seconds of CPU, and
        # the energy in and out over frames that had reference audio (ERLE).
        self.frames = 0
        self.cpu_s = 0.0
        self.ref_in_energy = self.ref_out_energy = 0.0
        # Whether the output replaces the mic: not where there is no echo (echo_detect.py).
        self.detector = EchoDetector(first_voice=onsets)
        self.trace: "EchoTrace | None" = None   # set by SessionEcho for diagnosis (echo_trace.py)

    @property
    def held_s(self) -> float:
        return len(self._held) / 2 / RATE

    def erle_db(self) -> float | None:
        """Echo return loss enhancement over every frame played against so far
        (mic energy in / out): a lower bound while the user speaks over it."""
        if self.ref_out_energy <= 0 or self.ref_in_energy <= 0:
            return None
        return 10.0 * math.log10(self.ref_in_energy / self.ref_out_energy)

    def process(self, pcm: bytes, first_t: float, ref: Reference) -> bytes:
        """``pcm``: 16 kHz mic audio whose first sample was captured at clock
        time ``first_t``. Returns the audio to hand on to VAD and ASR."""
        if not self.active:
            if not self._starts_playing(len(pcm) // 2, first_t, ref):
                return pcm
            self.active = True
        buf = self._held + pcm
        t0 = first_t - len(self._held) / 2 / RATE
        n = len(buf) // FRAME_BYTES * FRAME_BYTES
        out = bytearray()
        for off in range(0, n, FRAME_BYTES):
            t = t0 + off / 2 / RATE
            out += self._frame(bytes(buf[off:off + FRAME_BYTES]), t, ref.frame(t))
        self._held = bytearray(buf[n:])
        if t0 + n / 2 / RATE - self._last_ref_t > self.tail_s:
            # Nothing played for a tail: the echo has died away; pass through again.
            self.active = False
            out += self._held
            self._held = bytearray()
        return bytes(out)

    def drain(self) -> bytes:
        """What is held back (< 1 frame), handed on unprocessed; inactive after."""
        held, self._held, self.active = bytes(self._held), bytearray(), False
        if self._onset is not None:
            self._onset = EchoOnset()     # its floor and arming start again when cancelling does
        return held

    def _starts_playing(self, n: int, first_t: float, ref: Reference) -> bool:
        return any(ref.frame(first_t + k / RATE) is not None for k in range(0, max(n, 1), FRAME))

    def _frame(self, mic: bytes, t: float, played: bytes | None) -> bytes:
        c0 = time.process_time()
        e_mic, e_ref = _energy(mic), (_energy(played) if played is not None else 0.0)
        if played is not None:
            self._last_ref_t = t
        if self.trace is not None:
            self.trace.frame(t, played, FRAME_BYTES)
        if not self.detector.push(e_mic, e_ref):
            # No echo comes back (a headset, a quiet listener): AEC3 is not run at
            # all, which saves its CPU; it starts afresh if an echo is seen later.
            self._apm = self._onset = None
            self.cpu_s += time.process_time() - c0
            return mic
        if self._apm is None:
            self._apm = self._make_apm()
            self._onset = EchoOnset() if self._onsets else None
        self._apm.process_reverse(played if played is not None else bytes(FRAME_BYTES))
        out = self._apm.process(mic)
        if self.detector.voice_onset is not None:
            # A voice early in the first answer, on the raw mic (echo_first_voice.py).
            self.voice_at, self.detector.voice_onset = t - self.detector.voice_onset * FRAME_S, None
        if self.detector.raw_voice:
            # ... heard whole: AEC3 keeps learning, its output is not used.
            self.cpu_s += time.process_time() - c0
            self.frames += 1
            return mic
        e_out = _energy(out) if played is not None or self._onset is not None else 0.0
        if self._onset is not None:
            at = self._onset.push(t, e_out, FRAME, played is not None)
            if at is not None and self.detector.state == "echo":
                # Only over a known echo: with none yet known (a headset early in a
                # session) the VAD hears the user, and a click or a cup would pause.
                self.voice_at = at
        self.cpu_s += time.process_time() - c0
        self.frames += 1
        if played is not None:
            self.ref_in_energy += e_mic
            self.ref_out_energy += e_out
        return out
