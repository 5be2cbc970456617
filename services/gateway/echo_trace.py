"""A diagnostic record of one session's echo cancelling: what went in (the
microphone at 16 kHz), what came out (handed to VAD and ASR), and the
reference the canceller was given for each 10 ms frame, all on the capture
clock. Off by default; ``GATEWAY_ECHO_TRACE_DIR`` turns it on.

Why: offline, AEC3 + silero hear a user who talks over a loud echo within
0-160 ms (bench/bench_echo_onset.py), while on the stack a barge-in in the
250 ms / -6 dB room took 756-826 ms. The trace holds what the stack really
fed the canceller, so ``python -m bench.echo_trace FILE`` can say where
the time goes: the reference's alignment with the echo in the mic, frame
by frame, and when the VAD hears the user in the raw and the cleaned audio.

One file per stretch of cancelling (from the first answer audio the
canceller hears to the end of its tail: one answer, or several back to
back), written when the canceller goes idle, when the client turns it off
(near_field) and, for the stretch going on, when the session closes:
``<session>-<connection start, ms>-<n>.npz`` (a resumed session's new
connection writes its own files). Its memory grows ~100 KB per second of
stretch, and writing blocks the event loop for a few ms: for diagnosis, not
for production. Times are the gateway's monotonic clock, comparable with a
client's only on the same host."""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def for_session(settings: Any, session_id: str) -> "EchoTrace | None":
    """The session's trace if ``echo_trace_dir`` is set, else None."""
    return EchoTrace(settings.echo_trace_dir, session_id) if settings.echo_trace_dir else None


class EchoTrace:
    def __init__(self, directory: str, name: str) -> None:
        self.directory = directory
        self.name = f"{name}-{int(time.time() * 1000)}"
        self._written = 0
        self._reset()

    @property
    def frames(self) -> int:
        return len(self.frame_t)

    def _reset(self) -> None:
        self.chunk_t: list[float] = []     # capture time of each chunk's first sample
        self.chunk_n: list[int] = []       # its samples
        self.mic: list[bytes] = []
        self.out: list[bytes] = []
        self.frame_t: list[float] = []     # capture time of each AEC frame
        self.ref: list[bytes] = []         # the reference it was given (zeros for none)
        self.has_ref: list[bool] = []

    def chunk(self, first_t: float, mic: bytes, out: bytes) -> None:
        self.chunk_t.append(first_t)
        self.chunk_n.append(len(mic) // 2)
        self.mic.append(mic)
        self.out.append(out)

    def frame(self, t: float, played: bytes | None, nbytes: int) -> None:
        self.frame_t.append(t)
        self.ref.append(played if played is not None else bytes(nbytes))
        self.has_ref.append(played is not None)

    def write(self) -> str | None:
        """The stretch recorded so far, to a file; the record starts afresh."""
        if not self.frame_t:
            self._reset()
            return None
        self._written += 1
        path = os.path.join(self.directory, f"{self.name}-{self._written}.npz")
        try:
            os.makedirs(self.directory, exist_ok=True)
            np.savez(path, chunk_t=np.array(self.chunk_t), chunk_n=np.array(self.chunk_n),
                     mic=np.frombuffer(b"".join(self.mic), dtype="<i2"),
                     out=np.frombuffer(b"".join(self.out), dtype="<i2"),
                     frame_t=np.array(self.frame_t), has_ref=np.array(self.has_ref),
                     ref=np.frombuffer(b"".join(self.ref), dtype="<i2"))
        except OSError as e:
            log.warning("echo trace not written to %s: %s", path, e)
            self._reset()
            return None
        self._reset()
        return path
