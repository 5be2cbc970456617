"""The echo canceller's two clocks, as arithmetic: when a microphone sample
was captured, and what the listener's speaker played at that moment.

CaptureClock: a real-time client sends each chunk as soon as it is recorded,
so a chunk's arrival is its capture plus a network delay that varies. The
least (arrival - stream position) seen is the steadiest estimate of the
capture clock (as NTP takes the fastest exchange); a stream that jumps later
by more than ``GAP_S`` (a client that stopped sending a while) re-anchors.

PlaybackReference: the current response's audio at 16 kHz (resampled as it
is asked for, never ahead of need) at the position its Playout says the
speaker played at a given clock time. The server's idea of "played" starts
when the first chunk is sent, so it is always earlier than the echo (network,
client buffers, the room's delay): the reference leads, which AEC3 needs."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

from common.audio import StreamResampler
from services.gateway import metrics
from services.gateway.echo import FRAME_BYTES, RATE, EchoCanceller
from services.gateway.echo_trace import EchoTrace

if TYPE_CHECKING:
    from services.gateway.response import Response

GAP_S = 0.3   # arrival this much later than the capture clock says: the stream restarted


class CaptureClock:
    def __init__(self) -> None:
        self._offset: float | None = None   # capture time of stream sample 0

    def observe(self, end_sample: int, arrived: float) -> None:
        """Samples up to ``end_sample`` (exclusive) arrived by clock time ``arrived``."""
        offset = arrived - end_sample / RATE
        if self._offset is None or offset < self._offset or offset - self._offset > GAP_S:
            self._offset = offset

    def time_of(self, sample: int) -> float:
        assert self._offset is not None, "observe() a chunk first"
        return self._offset + sample / RATE


class PlaybackReference:
    """What the speaker played, for the response ``current()`` returns."""

    def __init__(self, current: Callable[[], "Response | None"]) -> None:
        self._current = current
        self._resp: "Response | None" = None
        self._rs: StreamResampler | None = None
        self._fed = 0                  # bytes of the response's audio resampled so far
        self._pcm = bytearray()        # its audio at 16 kHz

    def frame(self, t: float) -> bytes | None:
        resp = self._current()
        if resp is None or not resp.audio_out or not resp.started:
            return None
        pos = resp.playout.position_at(t)
        if pos is None:
            return None
        if resp is not self._resp:
            self._resp, self._rs, self._fed, self._pcm = resp, StreamResampler(resp.rate, RATE), 0, bytearray()
        start = int(pos * RATE / 1000) * 2
        audio = resp.playout.audio
        if start + FRAME_BYTES > len(self._pcm) and self._fed < len(audio):
            assert self._rs is not None
            self._pcm += self._rs.process(bytes(audio[self._fed:]))
            self._fed = len(audio)
        out = bytes(self._pcm[start:start + FRAME_BYTES])
        return out + bytes(FRAME_BYTES - len(out)) if len(out) < FRAME_BYTES else out


class SessionEcho:
    """The session's microphone audio through the canceller: the glue of the
    capture clock, the reference and the canceller, plus its metrics."""

    def __init__(self, current: Callable[[], "Response | None"], make_apm=None,
                 trace: EchoTrace | None = None, onsets: bool = False) -> None:
        self.canceller = EchoCanceller(make_apm, onsets=onsets) if make_apm is not None \
            else EchoCanceller(onsets=onsets)
        self.canceller.trace = self.trace = trace     # a diagnostic record, off by default (echo_trace.py)
        self.reference = PlaybackReference(current)
        self.capture = CaptureClock()
        self._samples = 0
        self._mark = (0, 0.0, 0.0, 0.0)   # frames, cpu, energies in/out at the last metrics update

    def clean(self, pcm16k: bytes, end_wall: float, enabled: bool = True) -> tuple[bytes, float]:
        """Mic audio (its last sample at clock time ``end_wall``) → the audio for
        VAD and ASR and the clock time of its last sample. Not ``enabled`` (the
        client said its mic is near_field): passed through, after whatever the
        canceller still held, so no sample is lost."""
        first = self._samples
        self._samples += len(pcm16k) // 2
        self.capture.observe(self._samples, end_wall)
        ec, tr = self.canceller, self.trace
        if not enabled:
            if tr is not None:
                tr.write()          # the stretch ends here (what the canceller held goes out unprocessed)
            return ec.drain() + pcm16k, end_wall
        was_active = ec.active
        traced = tr.frames if tr is not None else 0
        first_t = self.capture.time_of(first)
        out = ec.process(pcm16k, first_t, self.reference)
        if was_active or ec.active:
            self._metrics(ended=not ec.active)
        # A chunk whose frames the canceller processed is recorded, even one that
        # turned it on and off again (the reference began in its last, partial
        # frame: the next chunk starts the stretch), else the trace's frames
        # would lead its mic samples; a stretch that ends is written.
        if tr is not None and (was_active or ec.active or tr.frames != traced):
            tr.chunk(first_t, pcm16k, out)
            if was_active and not ec.active:
                tr.write()
        return out, end_wall - ec.held_s

    def take_voice_onset(self) -> float | None:
        """The capture time a voice began over a loud echo (echo_onset.py), once."""
        at, self.canceller.voice_at = self.canceller.voice_at, None
        return at

    def _metrics(self, ended: bool) -> None:
        ec, (frames, cpu, e_in, e_out) = self.canceller, self._mark
        b = metrics.base()
        metrics.ECHO_CANCEL_SECONDS.labels(**b).inc((ec.frames - frames) * 0.01)
        metrics.ECHO_CANCEL_CPU.labels(**b).inc(max(0.0, ec.cpu_s - cpu))
        self._mark = (ec.frames, ec.cpu_s, e_in, e_out)
        if ended:
            d_in, d_out = ec.ref_in_energy - e_in, ec.ref_out_energy - e_out
            if d_in > 0 and d_out > 0:
                metrics.ECHO_ERLE.labels(**b).observe(10.0 * math.log10(d_in / d_out))
            self._mark = (ec.frames, ec.cpu_s, ec.ref_in_energy, ec.ref_out_energy)

