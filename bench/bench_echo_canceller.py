"""The gateway's echo canceller offline (services/gateway/echo.py, WebRTC AEC3
from the livekit wheel), on the project's real speech: how much echo it
removes, how much of the user's voice it keeps, and what it costs.

Far end (the assistant): three clips back to back (~18 s). Echo: the far end
through a synthetic room (direct path + a 150 ms exponentially decaying
random tail), delayed 60-600 ms, at -20 to -6 dB, with noise at -55 dBFS.
Near end (the user): another clip, talking over the echo from 10 s.

- ERLE: mic energy / output energy over 3-10 s (far end only, after the
  canceller found the echo path), and over the first second (convergence).
- Near end kept: the output during the user's clip projected on what the
  canceller makes of the user's clip alone (its high-pass and 8 ms delay):
  the gain kept, and the signal-to-distortion ratio before → after (the
  distortion being residual echo, noise and double-talk suppression).
- CPU: process time per second of audio (one session).

    python -m bench echo_canceller
"""
from __future__ import annotations

import time

import numpy as np

from common.audio import read_wav
from services.gateway.echo import FRAME, RATE, EchoCanceller
from tests.procs import clips

NOISE_DBFS = -55.0
NEAR_AT_S = 10.0
CASES = [(d, l) for d in (60, 120, 250) for l in (-20, -10, -6)] + [(400, -10), (600, -10)]


def _speech(stem: str) -> np.ndarray:
    path = next(p for p, _ in clips() if p.stem.endswith(stem))
    pcm, rate = read_wav(path)
    assert rate == RATE
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def room(x: np.ndarray, delay_ms: float, db: float, rng: np.random.Generator) -> np.ndarray:
    ir = np.zeros(int(0.15 * RATE))
    ir[0] = 1.0
    t = np.arange(1, len(ir))
    ir[1:] = rng.normal(0, 1, len(ir) - 1) * np.exp(-t / (0.03 * RATE)) * 0.3
    y = np.convolve(x, ir)[:len(x)]
    y *= np.sqrt(np.mean(x ** 2) / np.mean(y ** 2)) * 10 ** (db / 20)
    d = int(delay_ms * RATE / 1000)
    return np.concatenate([np.zeros(d), y])[:len(x)]


class _Ref:
    def __init__(self, x: np.ndarray) -> None:
        self.x = x

    def frame(self, t: float) -> bytes | None:
        i = int(round(t * RATE))
        if i < 0 or i + FRAME > len(self.x):
            return None
        return np.clip(self.x[i:i + FRAME], -32768, 32767).astype("<i2").tobytes()


def cancel(far: np.ndarray, mic: np.ndarray) -> tuple[np.ndarray, float]:
    """The canceller's output for ``mic`` with ``far`` playing from t=0, 20 ms chunks; CPU seconds."""
    ec = EchoCanceller()
    data = np.clip(mic, -32768, 32767).astype("<i2").tobytes()
    out, ref, step = bytearray(), _Ref(far), 640
    c0 = time.process_time()
    for off in range(0, len(data), step):
        out += ec.process(data[off:off + step], off / 2 / RATE, ref)
    cpu = time.process_time() - c0
    y = np.frombuffer(bytes(out), dtype="<i2").astype(np.float64)
    return np.concatenate([y, np.zeros(len(mic) - len(y))]), cpu


def db(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(a ** 2) / max(np.sum(b ** 2), 1e-9)))


def main() -> None:
    far = np.concatenate([_speech("0870"), _speech("0920"), _speech("0890")])
    near = _speech("0880")
    n, s = len(far), int(NEAR_AT_S * RATE)
    talk = slice(s, s + len(near))
    user = np.zeros(n)
    user[talk] = near
    user_alone, _ = cancel(far, user)       # what the canceller makes of the user's voice alone
    user_alone_ref, _ = cancel(np.zeros(n), user)
    print(f"far end {n / RATE:.1f} s, user from {NEAR_AT_S:.0f} s for {len(near) / RATE:.1f} s, "
          f"noise {NOISE_DBFS:.0f} dBFS, 20 ms chunks")
    print(f"(user's voice alone with the far end playing and no echo: kept at "
          f"{db(user_alone[talk], user_alone[talk] - user_alone_ref[talk]):.1f} dB SDR)")
    print("delay  level | ERLE 3-10 s  first 1 s | user kept: gain  SDR in -> out | CPU ms per s")
    cpus = []
    for delay, level in CASES:
        rng = np.random.default_rng(delay * 100 - level)
        mic = room(far, delay, level, rng) + user + rng.normal(0, 32768 * 10 ** (NOISE_DBFS / 20), n)
        out, cpu = cancel(far, mic)
        cpus.append(cpu / (n / RATE) * 1000)
        settled, first = slice(3 * RATE, s), slice(0, RATE)
        r = user_alone_ref[talk]
        gain = float(np.dot(out[talk], r) / np.dot(r, r))
        sdr_in = db(near, mic[talk] - near)
        sdr_out = db(gain * r, out[talk] - gain * r)
        print(f"{delay:4d} ms {level:4d} dB | {db(mic[settled], out[settled]):8.1f} dB {db(mic[first], out[first]):7.1f} dB"
              f" | {gain:9.2f}  {sdr_in:6.1f} -> {sdr_out:5.1f} dB | {cpus[-1]:6.1f}")
    print(f"CPU per session while active: median {np.median(cpus):.1f} ms per s of audio "
          f"({np.median(cpus) / 100:.2f} ms per 10 ms frame)")


if __name__ == "__main__":
    main()
