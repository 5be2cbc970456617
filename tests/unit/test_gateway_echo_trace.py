"""The echo trace (services/gateway/echo_trace.py) and its reader
(bench/echo_trace.py): a stretch of cancelling is written when the canceller
goes idle, holding the mic as received, the output as handed on, and the
reference frame by frame on the same sample index; the reader finds the
room's delay in it. Off unless a directory is set."""
from __future__ import annotations

import numpy as np

from bench.echo_trace import lag_track, load
from services.gateway.echo import FRAME, RATE
from services.gateway.echo_ref import SessionEcho, echo_trace
from services.gateway.settings import GatewaySettings
from tests.unit.test_gateway_echo import CopyApm, pcm, speech


class Played:
    """``x`` played from clock time ``at``, silence (None) outside it."""

    def __init__(self, x: np.ndarray, at: float) -> None:
        self.x, self.at = x, at

    def frame(self, t: float) -> bytes | None:
        i = int(round((t - self.at) * RATE))
        return None if i < 0 or i + FRAME > len(self.x) else pcm(self.x[i:i + FRAME])


def feed(echo: SessionEcho, mic: np.ndarray, chunk: int = 800) -> bytes:
    data, out = pcm(mic), bytearray()
    for off in range(0, len(data), chunk * 2):
        piece = data[off:off + chunk * 2]
        end_wall = 100.0 + (off // 2 + len(piece) // 2) / RATE
        got, _ = echo.clean(piece, end_wall)
        out += got
    return bytes(out)


def test_a_stretch_is_written_when_the_canceller_goes_idle(tmp_path):
    far = speech(0)[:3 * RATE]
    played = np.concatenate([np.zeros(RATE), far])          # the answer plays from t = 101 s
    # The echo: the answer 200 ms later at -6 dB (no reverberation: its lag is exact).
    mic = np.concatenate([np.zeros(int(0.2 * RATE)), played * 0.5, np.zeros(2 * RATE)])[:len(played) + 2 * RATE] + 3.0
    echo = SessionEcho(lambda: None, make_apm=CopyApm, trace=echo_trace(
        GatewaySettings(echo_trace_dir=str(tmp_path)), "sess_x"))
    echo.reference = Played(far, 101.0)
    out = feed(echo, mic)
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["sess_x-1.npz"]       # one stretch: the answer and its tail
    d = load(str(files[0]))
    first = int(round((d["t_of"](0) - 100.0) * RATE))       # the trace starts where the playing did
    assert RATE - 800 <= first <= RATE
    n = d["n"]
    as_int = lambda x: np.frombuffer(pcm(x), dtype="<i2")   # noqa: E731
    assert np.array_equal(d["mic"][:n], as_int(mic)[first:first + n])
    assert np.array_equal(d["out"][:n], np.frombuffer(out, dtype="<i2")[first:first + n])
    assert np.array_equal(d["ref"][:n], as_int(np.concatenate([played, np.zeros(n)]))[first:first + n])
    assert n >= 3 * RATE                                     # the whole answer, and its tail
    lags = [lag for _, lag, c in lag_track(d["mic"][:n], d["ref"][:n]) if c > 0.5]
    assert len(lags) >= 4 and all(lag == 200 for lag in lags)


def test_off_unless_a_directory_is_set(tmp_path):
    assert echo_trace(GatewaySettings(), "sess_x") is None
    echo = SessionEcho(lambda: None, make_apm=CopyApm)
    echo.reference = Played(np.ones(2 * RATE) * 1000, 100.5)
    feed(echo, np.zeros(3 * RATE))
    assert echo.trace is None and list(tmp_path.iterdir()) == []
