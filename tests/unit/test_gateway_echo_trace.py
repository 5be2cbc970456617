"""The echo trace (services/gateway/echo_trace.py) and its reader
(bench/echo_trace.py): a stretch of cancelling is written when the canceller
goes idle, holding the mic as received, the output as handed on, and the
reference frame by frame, which the reader puts on the mic's sample index by
capture time; it finds the room's delay in it. Chunks that are not whole
frames (a 24 kHz client's 489/490 samples) and an answer that starts inside
a chunk's last, partial frame keep the three in line. Off unless a directory
is set."""
from __future__ import annotations

import numpy as np
import pytest

from bench.echo_trace import lag_track, load
from services.gateway import echo_trace
from services.gateway.echo import FRAME, RATE
from services.gateway.echo_ref import SessionEcho
from services.gateway.settings import GatewaySettings
from tests.unit.test_gateway_echo import CopyApm, pcm, speech

T0 = 100.0        # capture time of the stream's first sample


class Played:
    """``x`` played from clock time ``at``, silence (None) outside it."""

    def __init__(self, x: np.ndarray, at: float) -> None:
        self.x, self.at = x, at

    def frame(self, t: float) -> bytes | None:
        i = int(round((t - self.at) * RATE))
        return None if i < 0 or i + FRAME > len(self.x) else pcm(self.x[i:i + FRAME])


def feed(echo: SessionEcho, mic: np.ndarray, sizes: tuple[int, ...]) -> bytes:
    data, out, off, k = pcm(mic), bytearray(), 0, 0
    while off < len(data):
        piece = data[off:off + sizes[k % len(sizes)] * 2]
        off, k = off + len(piece), k + 1
        got, _ = echo.clean(piece, T0 + off / 2 / RATE)
        out += got
    return bytes(out)


def as_int(x: np.ndarray) -> np.ndarray:
    return np.frombuffer(pcm(x), dtype="<i2")


def traced_session(tmp_path) -> SessionEcho:
    return SessionEcho(lambda: None, make_apm=CopyApm,
                       trace=echo_trace.for_session(GatewaySettings(echo_trace_dir=str(tmp_path)), "sess_x"))


@pytest.mark.parametrize("sizes,start", [
    ((800,), 1.0),                       # whole frames, the answer on a chunk boundary
    # A 24 kHz client's chunks (a chunk starts at sample 16153): the answer
    # starting in a chunk's fourth frame, in its last, partial frame, and in its second.
    ((489, 490), (16153 + 400) / RATE),
    ((489, 490), (16153 + 485) / RATE),
    ((489, 490), (16153 + 200) / RATE),
])
def test_a_stretch_is_written_when_the_canceller_goes_idle_and_lines_up(tmp_path, sizes, start):
    far = speech(0)[:3 * RATE]
    lead = int(start * RATE)
    played = np.concatenate([np.zeros(lead), far])
    # The echo: the answer 250 ms later at -6 dB (no reverberation: its lag is exact).
    d = int(0.25 * RATE)
    mic = np.concatenate([np.zeros(d), played * 0.5, np.zeros(2 * RATE)])[:len(played) + 2 * RATE] + 3.0
    echo = traced_session(tmp_path)
    echo.reference = Played(far, T0 + start)
    out = feed(echo, mic, sizes)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("sess_x-") and files[0].name.endswith("-1.npz")
    z = np.load(files[0])
    assert z["frame_t"][0] >= z["chunk_t"][0] - 1e-9       # no frame of a chunk left out of the record
    assert len(z["frame_t"]) * FRAME <= len(z["mic"])
    tr = load(str(files[0]))
    # The trace starts with the chunk the canceller first heard the answer in.
    first = int(round((tr["t_of"](0) - T0) * RATE))
    assert lead - max(sizes) < first <= lead + FRAME
    n = tr["n"]
    assert n >= 3 * RATE                                     # the whole answer, and its tail
    assert np.array_equal(tr["mic"], as_int(mic)[first:first + n])
    assert np.array_equal(tr["out"], np.frombuffer(out, dtype="<i2")[first:first + n])
    # The reference sits on the mic's index, from the canceller's first 10 ms
    # frame that began with the answer playing (a frame, or the next chunk
    # where the canceller came on and off in the same chunk): its samples where
    # they played.
    expect = as_int(np.concatenate([played, np.zeros(n)]))[first:first + n]
    played_at = np.flatnonzero(tr["has_ref"])
    assert lead - first <= played_at[0] < lead - first + max(sizes) + FRAME
    assert np.array_equal(tr["ref"][tr["has_ref"]], expect[tr["has_ref"]])
    lags = [lag for _, lag, c in lag_track(tr["mic"], tr["ref"]) if c > 0.5]
    assert len(lags) >= 3 and all(lag == 250 for lag in lags)


def test_each_stretch_has_its_file(tmp_path):
    far = speech(0)[:RATE]
    echo = traced_session(tmp_path)

    class TwoAnswers:
        def frame(self, t: float) -> bytes | None:
            return Played(far, T0 + 0.5).frame(t) or Played(far, T0 + 3.0).frame(t)

    echo.reference = TwoAnswers()
    feed(echo, np.full(6 * RATE, 5.0), (490,))
    names = sorted(f.name for f in tmp_path.iterdir())
    assert [n.rsplit("-", 1)[1] for n in names] == ["1.npz", "2.npz"]
    assert len({n.rsplit("-", 1)[0] for n in names}) == 1     # one connection's files


def test_off_unless_a_directory_is_set(monkeypatch):
    assert echo_trace.for_session(GatewaySettings(), "sess_x") is None

    def never(*_a, **_k):
        raise AssertionError("traced with no directory set")

    for name in ("chunk", "frame", "write"):
        monkeypatch.setattr(echo_trace.EchoTrace, name, never)
    echo = SessionEcho(lambda: None, make_apm=CopyApm, trace=echo_trace.for_session(GatewaySettings(), "sess_x"))
    echo.reference = Played(np.ones(2 * RATE) * 1000, T0 + 0.5)
    out = feed(echo, np.full(3 * RATE, 7.0), (490,))
    assert len(out) == 3 * RATE * 2


def test_a_client_turning_the_canceller_off_ends_the_stretch(tmp_path):
    echo = traced_session(tmp_path)
    echo.reference = Played(np.ones(3 * RATE) * 1000, T0 + 0.1)
    data = pcm(np.full(RATE, 9.0))
    for k in range(0, len(data), 980):
        echo.clean(data[k:k + 980], T0 + (k + 980) / 2 / RATE)
    assert list(tmp_path.iterdir()) == []                    # still playing: nothing written yet
    echo.clean(pcm(np.full(490, 9.0)), T0 + 1.0 + 490 / RATE, enabled=False)   # near_field from here
    (written,) = tmp_path.iterdir()
    assert load(str(written))["n"] >= int(0.85 * RATE)


def test_the_reader_times_the_vads_start_decision_not_a_first_voiced_frame():
    from bench.echo_trace import FRAME as VAD_FRAME, heard_after

    # Speech before the onset (an earlier start), a two-frame blip after it
    # (too short for a start), then 5 frames: decided on the fifth.
    p = [0.9] * 6 + [0.0] * 10 + [0.6, 0.8, 0.1] + [0.0] * 3 + [0.7] * 5 + [0.0] * 3
    onset = 16 * VAD_FRAME
    assert heard_after(p, onset) == pytest.approx((27 - 16) * 32.0)
    assert heard_after([0.0] * 40, onset) is None
