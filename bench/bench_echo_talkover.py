"""A user talking over the answer before the echo detector has decided
(services/gateway/echo_detect.py): what the VAD hears of them through the
echo canceller, with the talk-over rule and without it, on the project's
real speech and the real silero VAD.

Far end (the answer): three clips back to back, playing from 0 s. Mic: the
user's 7.1 s sentence (clip 0870) from 0.4, 0.75 or 2 s, over no echo or
over the answer's echo (bench_echo_canceller's synthetic room), or the echo
alone. Reported per case: the VAD's speech in the canceller's output, its
first voiced frame, and the gaps inside it of 400 ms or more (a gap of
silence_duration_ms, 500 ms, ends the turn inside the sentence). With the
echo alone the VAD must hear nothing (the assistant interrupting itself).

    python -m bench echo_talkover
"""
from __future__ import annotations

import re

import numpy as np

from bench.bench_echo_canceller import NOISE_DBFS, _speech, cancel, room
from services.gateway import echo_detect
from services.gateway.echo import RATE
from services.vad.engine import SileroModel

FRAME_MS = 32
NEAR_AT = (0.4, 0.75, 2.0)
ECHO_ONLY = [(d, lv) for lv in (-6, -10, -20, -30) for d in (60, 250, 400)]
ECHO_AND_USER = [(120, lv) for lv in (-6, -10, -20)]


def vad(x: np.ndarray) -> str:
    """'#' for each 32 ms frame silero calls speech (threshold 0.5), '.' otherwise."""
    m, out = SileroModel(), []
    state, ctx = m.new_state(), np.zeros(64, np.float32)
    y = (x / 32768.0).astype(np.float32)
    for i in range(0, len(y) - 512, 512):
        prob, state = m.run(np.concatenate([ctx, y[i:i + 512]])[None, :], state)
        ctx = y[i + 448:i + 512]
        out.append("#" if prob > 0.5 else ".")
    return "".join(out)


def heard(far: np.ndarray, mic: np.ndarray) -> tuple[int, float | None, list[int]]:
    s = vad(cancel(far, mic)[0])
    gaps = [len(g) * FRAME_MS for g in re.findall(r"\.+", s.strip("."))]
    first = s.find("#") * FRAME_MS / 1000 if "#" in s else None
    return s.count("#") * FRAME_MS, first, [g for g in gaps if g >= 400]


def cases(far: np.ndarray, near: np.ndarray):
    n, rng = len(far), np.random.default_rng(7)
    noise = rng.normal(0, 32768 * 10 ** (NOISE_DBFS / 20), n)

    def user(at: float) -> np.ndarray:
        u, s = np.zeros(n), int(at * RATE)
        u[s:s + len(near)] = near[:n - s]
        return u

    for at in NEAR_AT:
        yield f"user at {at:4.2f} s, no echo", user(at) + noise
    for delay, level in ECHO_ONLY:
        yield f"echo {level:3d} dB {delay:3d} ms alone", room(far, delay, level, rng) + noise
    for delay, level in ECHO_AND_USER:
        for at in (0.75, 2.0):
            yield f"user at {at:4.2f} s, echo {level:3d} dB", room(far, delay, level, rng) + user(at) + noise


def main() -> None:
    far = np.concatenate([_speech("0880"), _speech("0890"), _speech("0920")])
    near = _speech("0870")
    print(f"answer playing from 0 s ({len(far) / RATE:.1f} s); the user's sentence {len(near) / RATE:.1f} s; "
          f"VAD speech / first voiced frame / gaps >= 400 ms")
    print(f"{'case':34s} | {'talk-over rule on':32s} | rule off")
    run = echo_detect.TALK_OVER_RUN
    for name, mic in cases(far, near):
        rows = []
        for on in (True, False):
            echo_detect.TALK_OVER_RUN = run if on else 10 ** 9
            ms, first, gaps = heard(far, mic)
            rows.append(f"{ms:5d} ms  first {first if first is None else f'{first:4.2f}'}  gaps {gaps}")
        echo_detect.TALK_OVER_RUN = run
        print(f"{name:34s} | {rows[0]:32s} | {rows[1]}")


if __name__ == "__main__":
    main()
