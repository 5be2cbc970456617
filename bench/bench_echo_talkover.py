"""A user talking over the answer before the echo detector has decided
(services/gateway/echo_detect.py): what the VAD hears of them through the
echo canceller, on the project's real speech and the real silero VAD. AEC3,
not converged, assumes an echo and ducks the user's voice; the question for
any fix is how much of the sentence the VAD loses, and the hazard for any
fix is the assistant's own echo reaching the VAD.

Far end (the answer): three clips back to back, playing from 0 s and going
on under the user (as when the VAD misses the onset, or `interrupt_response`
is off; on the stack a barge-in the VAD hears pauses the answer, and the
canceller passes the mic through 600 ms after the played audio stops). Mic:
the user's 7.1 s sentence (clip 0870) from 0.4, 0.75 or 2 s, over no echo or
over the answer's echo (bench_echo_canceller's synthetic room); the echo
alone; the echo with non-speech sound that rises and falls (2 Hz noise
bursts: typing, dishes), where the VAD must hear nothing of the answer.
Reported: the VAD's speech in the canceller's output and in the raw mic, the
first voiced frame, and the gaps of 400 ms or more inside the speech (a gap
of silence_duration_ms, 500 ms, ends the turn inside the sentence).

    python -m bench echo_talkover
"""
from __future__ import annotations

import re

import numpy as np

from bench.bench_echo_canceller import NOISE_DBFS, _speech, cancel, room
from services.gateway.echo import RATE
from services.vad.engine import VadEngine
from services.vad.segmenter import SegmenterParams

FRAME_MS = 32
NEAR_AT = (0.4, 0.75, 2.0)
ENGINE = VadEngine()


def vad(x: np.ndarray) -> str:
    """'#' for each 32 ms frame silero calls speech (threshold 0.5), '.' otherwise:
    the VAD service's own stream (services/vad/engine.py), its probabilities."""
    stream = ENGINE.open(SegmenterParams())
    stream.push(np.clip(x, -32768, 32767).astype("<i2").tobytes())
    return "".join("#" if p > 0.5 else "." for p in stream.probs)


def summary(x: np.ndarray) -> str:
    s = vad(x)
    gaps = [len(g) * FRAME_MS for g in re.findall(r"\.+", s.strip("."))]
    first = f"{s.find('#') * FRAME_MS / 1000:4.2f}" if "#" in s else "   -"
    return f"{s.count('#') * FRAME_MS:5d} ms  first {first}  gaps {[g for g in gaps if g >= 400]}"


def bursts(n: int, dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """Noise switched on and off twice a second (100 ms ramps): not speech."""
    t = np.arange(n) / RATE
    env = np.clip(np.sin(2 * np.pi * 2.0 * t) * 4, 0, 1)
    return rng.normal(0, 32768 * 10 ** (dbfs / 20), n) * env


def cases(far: np.ndarray, near: np.ndarray):
    n, rng = len(far), np.random.default_rng(7)
    noise = rng.normal(0, 32768 * 10 ** (NOISE_DBFS / 20), n)

    def user(at: float) -> np.ndarray:
        u, s = np.zeros(n), int(at * RATE)
        u[s:s + len(near)] = near[:n - s]
        return u

    for at in NEAR_AT:
        yield f"user at {at:4.2f} s, no echo", user(at) + noise
    for delay, level in ((60, -6), (250, -10), (400, -20)):
        yield f"echo {level:3d} dB {delay:3d} ms alone", room(far, delay, level, rng) + noise
    for level, burst in ((-20, -25), (-20, -35), (-30, -45)):
        yield f"echo {level:3d} dB + bursts {burst} dBFS", room(far, 120, level, rng) + bursts(n, burst, rng) + noise
    for level in (-6, -20):
        yield f"user at 0.75 s, echo {level:3d} dB", room(far, 120, level, rng) + user(0.75) + noise


def main() -> None:
    far = np.concatenate([_speech("0880"), _speech("0890"), _speech("0920")])
    near = _speech("0870")
    print(f"answer playing from 0 s ({len(far) / RATE:.1f} s); the user's sentence {len(near) / RATE:.1f} s; "
          f"VAD speech / first voiced frame / gaps >= 400 ms")
    print(f"{'case':34s} | {'through the canceller':36s} | raw mic")
    for name, mic in cases(far, near):
        print(f"{name:34s} | {summary(cancel(far, mic)[0]):36s} | {summary(mic)}")


if __name__ == "__main__":
    main()
