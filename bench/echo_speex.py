"""Would Speex's echo canceller do instead of AEC3 for barge-in under a loud
echo? (issue #13; a one-off comparison, not part of ``make bench``: it needs
Debian's ``libspeexdsp1``, which the project does not install.)

AEC3 holds a user who talks over a loud echo back for up to ~0.5 s (its
double-talk suppression; docs/benchmarks.md, "Echo") and exposes no setting
in the ``livekit`` wheel. libspeexdsp's MDF canceller, with its
preprocessor's residual echo suppression (whose level while the near end is
active is a setting), is the other canceller on the registries. This runs
both over bench_echo_onset's clips (the answer +6 dB, the stack's level),
7 rooms x 2 seeds, and prints per canceller: the user's onset delay (as
bench_echo_onset), the 32 ms frames silero calls speech in the echo alone
after the first 2 s (each one a false pause of the answer on the stack),
and CPU per second of audio.

    sudo apt install libspeexdsp1
    python -m bench.echo_speex
"""
from __future__ import annotations

import ctypes
import functools
import time
from typing import Callable

import numpy as np

from bench.bench_echo_canceller import NOISE_DBFS, _speech, cancel, room
from bench.bench_echo_talkover import FRAME_MS, vad
from services.gateway.echo import RATE

ROOMS = [(60, -6), (120, -6), (120, -10), (250, -6), (250, -10), (250, -20), (400, -6)]
FRAME = 160
# speex_echo.h / speex_preprocess.h request numbers
ECHO_SET_SAMPLING_RATE = 24
PP_SET_DENOISE, PP_SET_AGC, PP_SET_VAD, PP_SET_DEREVERB = 0, 2, 4, 8
PP_SET_ECHO_SUPPRESS, PP_SET_ECHO_SUPPRESS_ACTIVE, PP_SET_ECHO_STATE = 20, 22, 24


def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL("libspeexdsp.so.1")
    lib.speex_echo_state_init.restype = lib.speex_preprocess_state_init.restype = ctypes.c_void_p
    lib.speex_echo_state_init.argtypes = lib.speex_preprocess_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_echo_cancellation.argtypes = [ctypes.c_void_p] * 4
    lib.speex_echo_ctl.argtypes = lib.speex_preprocess_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                                                       ctypes.c_void_p]
    lib.speex_preprocess_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.speex_echo_state_destroy.argtypes = lib.speex_preprocess_state_destroy.argtypes = [ctypes.c_void_p]
    return lib


def speex(lib: ctypes.CDLL, far: np.ndarray, mic: np.ndarray, tail_ms: float = 500,
          suppress: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """``mic`` through Speex with ``far`` as played (from t = 0): the output
    and CPU seconds. ``suppress``: the preprocessor's residual echo
    suppression (dB, idle / while the near end is active), or none."""
    st = lib.speex_echo_state_init(FRAME, int(tail_ms * RATE / 1000))
    rate = ctypes.c_int(RATE)
    lib.speex_echo_ctl(st, ECHO_SET_SAMPLING_RATE, ctypes.byref(rate))
    pp = None
    if suppress is not None:
        pp = lib.speex_preprocess_state_init(FRAME, RATE)
        off = ctypes.c_int(0)
        for req in (PP_SET_DENOISE, PP_SET_AGC, PP_SET_VAD, PP_SET_DEREVERB):
            lib.speex_preprocess_ctl(pp, req, ctypes.byref(off))
        lib.speex_preprocess_ctl(pp, PP_SET_ECHO_STATE, ctypes.c_void_p(st))
        idle, active = ctypes.c_int(suppress[0]), ctypes.c_int(suppress[1])
        lib.speex_preprocess_ctl(pp, PP_SET_ECHO_SUPPRESS, ctypes.byref(idle))
        lib.speex_preprocess_ctl(pp, PP_SET_ECHO_SUPPRESS_ACTIVE, ctypes.byref(active))
    m = np.clip(mic, -32768, 32767).astype("<i2")
    f = np.clip(far, -32768, 32767).astype("<i2")
    out, buf = np.zeros(len(m), dtype="<i2"), np.zeros(FRAME, dtype="<i2")
    c0 = time.process_time()
    for i in range(0, len(m) - FRAME + 1, FRAME):
        rec, ply = np.ascontiguousarray(m[i:i + FRAME]), np.ascontiguousarray(f[i:i + FRAME])
        lib.speex_echo_cancellation(st, rec.ctypes.data, ply.ctypes.data, buf.ctypes.data)
        if pp is not None:
            lib.speex_preprocess_run(pp, buf.ctypes.data)
        out[i:i + FRAME] = buf
    cpu = time.process_time() - c0
    lib.speex_echo_state_destroy(st)
    if pp is not None:
        lib.speex_preprocess_state_destroy(pp)
    return out.astype(np.float64), cpu


def main() -> None:
    try:
        lib = _lib()
    except OSError as e:
        raise SystemExit(f"libspeexdsp not found ({e}): sudo apt install libspeexdsp1") from None
    far = np.concatenate([_speech("0880"), _speech("0890"), _speech("0920")]) * 2.0     # +6 dB
    near = _speech("0870")
    n = len(far)
    noise = np.random.default_rng(7).normal(0, 32768 * 10 ** (NOISE_DBFS / 20), n)
    Run = Callable[[np.ndarray], tuple[np.ndarray, float]]
    cancellers: dict[str, Run] = {"AEC3 (the gateway's)": lambda mic: cancel(far, mic),
                                  "Speex": lambda mic: speex(lib, far, mic)}
    for sup in ((-40, -15), (-40, -6), (-25, -3)):
        cancellers[f"Speex + suppression {sup[0]}/{sup[1]} dB"] = functools.partial(
            lambda mic, s: speex(lib, far, mic, suppress=s), s=sup)
    for name, run in cancellers.items():
        delays, voiced, cpu = [], 0, 0.0
        for d, lv in ROOMS:
            for seed in (1, 2):
                echo = room(far, d, lv, np.random.default_rng(seed))
                out, c = run(echo + noise)
                cpu += c
                voiced += vad(out)[int(2000 / FRAME_MS):].count("#")
                for at in (2.0, 5.0):
                    user = np.zeros(n)
                    s0 = int(at * RATE)
                    user[s0:s0 + len(near)] = near[:n - s0]
                    alone = vad(user + noise).find("#") * FRAME_MS
                    heard = vad(run(echo + user + noise)[0]).find("#", int(at * 1000 / FRAME_MS))
                    delays.append(heard * FRAME_MS - alone if heard >= 0 else float("nan"))
        ok = [x for x in delays if x == x]
        echo_s = len(ROOMS) * 2 * (n / RATE - 2)
        print(f"{name:34s} onset p50 {np.percentile(ok, 50):5.0f} p95 {np.percentile(ok, 95):5.0f} ms "
              f"(negative: heard before the user spoke); echo alone voiced {voiced * FRAME_MS / 1000:5.1f} s "
              f"of {echo_s:.0f} s; CPU {1000 * cpu / (len(ROOMS) * 2 * n / RATE):.1f} ms per s", flush=True)


if __name__ == "__main__":
    main()
