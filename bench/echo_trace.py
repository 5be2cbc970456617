"""Where a barge-in under echo spends its time, from a gateway's echo trace
(services/gateway/echo_trace.py: run the gateway with
GATEWAY_ECHO_TRACE_DIR=DIR, then e.g. ``python -m bench.bench_echo``).

For one trace file (an answer's stretch of cancelling) it prints:
- the reference's alignment with the echo in the microphone: in 0.5 s
  windows while the reference plays, the lag (ms) at which the mic best
  correlates with the reference fed for the same capture times, and that
  correlation. A steady lag within what AEC3 follows (up to ~400 ms) is
  what the canceller needs; a lag that moves, or one beyond that, is not.
- around the barge-in (``--onset``, the monotonic time of the user's first
  voiced sample, as bench_echo prints it; default: 1.5 s before the
  reference stops, which a barge-in's pause does), each 32 ms frame: the
  levels (dBFS) of the mic, the canceller's output and the reference, and
  silero's speech probability on the raw mic and on the output.

    python -m bench.echo_trace DIR/sess_...-2.npz [--onset 12345.67] [--replay 0 50 100]

``--replay`` runs the traced mic through a fresh canceller again, with the
reference as traced or shifted later: whether the trace reproduces the
stack, and what another alignment would have done. It also says when an
energy rule on the output (``energy_onsets``) would have heard the user,
and how often it fires before (on the echo alone: each a false pause).
"""
from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np

from services.vad.engine import FRAME_SAMPLES, SAMPLE_RATE, VadEngine
from services.vad.segmenter import Segmenter, SegmenterParams, SpeechStart, SpeechStop

RATE = SAMPLE_RATE
FRAME = FRAME_SAMPLES        # silero's 32 ms
FRAME_10MS = 160             # the canceller's


def load(path: str) -> dict:
    """The trace's arrays on one sample index: ``mic`` and ``out`` as recorded,
    ``ref`` and ``has_ref`` placed by each frame's capture time (a frame
    before the first recorded mic sample is left out), ``t_of(i)`` the
    capture time of sample i (the clock may re-anchor between chunks)."""
    z = np.load(path)
    d = {k: z[k] for k in z.files}
    mic, out = d["mic"].astype(np.float64), d["out"].astype(np.float64)
    starts = np.concatenate([[0], np.cumsum(d["chunk_n"])[:-1]])
    chunk_t = d["chunk_t"]

    def t_of(i: float) -> float:
        c = max(0, int(np.searchsorted(starts, i, side="right")) - 1)
        return float(chunk_t[c] + (i - starts[c]) / RATE)

    def index_of(t: float) -> int:
        c = max(0, int(np.searchsorted(chunk_t, t + 0.5 / RATE, side="right")) - 1)
        return int(starts[c] + round((t - chunk_t[c]) * RATE))

    n = min(len(mic), len(out))
    ref, has_ref = np.zeros(n), np.zeros(n, dtype=bool)
    frames = d["ref"].astype(np.float64).reshape(-1, FRAME_10MS)
    for t, frame, played in zip(d["frame_t"], frames, d["has_ref"]):
        i = index_of(float(t))
        if 0 <= i < n:
            m = min(FRAME_10MS, n - i)
            ref[i:i + m], has_ref[i:i + m] = frame[:m], played
    return {"mic": mic[:n], "out": out[:n], "ref": ref, "has_ref": has_ref, "n": n, "t_of": t_of,
            "index_of": index_of}


def lag_track(mic: np.ndarray, ref: np.ndarray, win_s: float = 0.5,
              lags_ms: tuple[float, float] = (-200.0, 800.0)) -> list[tuple[int, float, float]]:
    """(window start, best lag in ms, normalized correlation) for each window
    with reference audio: the echo in ``mic`` is the reference ``lag`` later."""
    w = int(win_s * RATE)
    lo, hi = int(lags_ms[0] * RATE / 1000), int(lags_ms[1] * RATE / 1000)
    out = []
    for s in range(max(0, hi), len(mic) - w, w):     # from where every lag in range can be seen
        m = mic[s:s + w]
        a, b = max(0, s - hi), s - lo + w
        r = ref[a:b]
        if np.dot(r, r) < 1e3 * len(r) or np.dot(m, m) <= 0:
            continue
        # corr[k] = sum m[j] * r[j + k]; lag = s - (a + k)
        n = len(r) + w
        f = np.fft.irfft(np.conj(np.fft.rfft(m, n)) * np.fft.rfft(r, n), n)[:len(r) - w + 1]
        energy = np.convolve(r * r, np.ones(w), mode="valid")
        norm = f / np.sqrt(np.maximum(energy, 1e-9) * np.dot(m, m))
        k = int(np.argmax(norm))
        out.append((s, (s - (a + k)) * 1000 / RATE, float(norm[k])))
    return out


class _Shifted:
    """The traced reference as a canceller's Reference on the sample index
    (t = index / RATE), ``shift`` samples later than traced."""

    def __init__(self, ref: np.ndarray, has_ref: np.ndarray, shift: int) -> None:
        self.ref, self.has, self.shift = ref, has_ref, shift

    def frame(self, t: float) -> bytes | None:
        i = int(round(t * RATE)) - self.shift
        if i < 0 or i + FRAME_10MS > len(self.ref) or not self.has[i]:
            return None
        return np.clip(self.ref[i:i + FRAME_10MS], -32768, 32767).astype("<i2").tobytes()


def replay(mic: np.ndarray, ref: np.ndarray, has_ref: np.ndarray, shift_ms: float = 0.0,
           chunk: int = 490) -> np.ndarray:
    """The traced mic through a fresh canceller (the gateway's, AEC3), its
    reference ``shift_ms`` later than traced: whether the trace reproduces
    the stack, and what another alignment would have done."""
    from services.gateway.echo import EchoCanceller

    ec, r = EchoCanceller(), _Shifted(ref, has_ref, int(shift_ms * RATE / 1000))
    data, out = np.clip(mic, -32768, 32767).astype("<i2").tobytes(), bytearray()
    for off in range(0, len(data), chunk * 2):
        out += ec.process(data[off:off + chunk * 2], off / 2 / RATE, r)
    y = np.frombuffer(bytes(out), dtype="<i2").astype(np.float64)
    return np.concatenate([y, np.zeros(len(mic) - len(y))])


def heard_after(p: list[float], onset_i: int) -> float | None:
    """ms from the onset to the end of the 32 ms frame on which the VAD
    service's segmenter (default settings: 0.5, 150 ms of speech) decides a
    speech start at or after the onset: when the gateway would pause the answer."""
    seg = Segmenter(SegmenterParams(), frame_ms=FRAME * 1000 / RATE)
    onset_ms = onset_i * 1000 / RATE
    for prob in p:
        ev = seg.push(prob)
        if isinstance(ev, SpeechStop):
            continue
        if isinstance(ev, SpeechStart) and ev.decided_at_ms >= onset_ms:
            return ev.decided_at_ms - onset_ms
    return None


def energy_onsets(out: np.ndarray, rise_db: float = 20.0, frames: int = 2, floor_s: float = 1.0,
                  min_dbfs: float = -50.0, frame: int = 320) -> list[int]:
    """Where the canceller's output jumps: the first sample of each run of
    ``frames`` 20 ms frames at least ``rise_db`` over the median level of the
    ``floor_s`` before (and above ``min_dbfs``). A candidate for hearing a
    user over a loud echo sooner than the VAD (docs/benchmarks.md, "Echo"):
    AEC3 lets a voice's first ~100 ms through before it holds it back."""
    n = len(out) // frame
    x = out[:n * frame].reshape(n, frame)
    lv = 10 * np.log10(np.maximum((x * x).mean(axis=1), 1e-3) / 32768 ** 2)
    w, run, hits = int(floor_s * RATE / frame), 0, []
    for i in range(10, n):
        over = lv[i] > max(min_dbfs, float(np.median(lv[max(0, i - w):i])) + rise_db)
        run = run + 1 if over else 0
        if run == frames:
            hits.append((i - frames + 1) * frame)
    return hits


def dbfs(x: np.ndarray) -> float:
    return 10 * np.log10(max(float(np.mean(x * x)), 1e-3) / 32768 ** 2)


def probs(engine: VadEngine, x: np.ndarray) -> list[float]:
    stream = engine.open(SegmenterParams())
    stream.push(np.clip(x, -32768, 32767).astype("<i2").tobytes())
    return list(stream.probs)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="An echo trace's alignment and its barge-in, frame by frame.")
    p.add_argument("path")
    p.add_argument("--onset", type=float, default=None, help="monotonic time of the user's first voiced sample")
    p.add_argument("--before", type=float, default=0.5, help="seconds shown before the onset")
    p.add_argument("--after", type=float, default=1.2, help="seconds shown after the onset")
    p.add_argument("--replay", type=float, nargs="*", metavar="SHIFT_MS",
                   help="also run the mic through a fresh canceller, the reference as traced (0) "
                        "or that many ms later, and say when silero hears the user in each")
    args = p.parse_args(list(argv or []))
    d = load(args.path)
    n, mic, out, ref = d["n"], d["mic"][:d["n"]], d["out"][:d["n"]], d["ref"][:d["n"]]
    t0 = d["t_of"](0)
    print(f"{args.path}: {n / RATE:.1f} s from t = {t0:.2f}; reference in "
          f"{d['has_ref'].sum() / RATE:.1f} s of it")
    print("alignment (the echo lags the reference by; correlation):")
    track = lag_track(mic, ref)
    for s, lag, c in track:
        print(f"  {s / RATE:6.2f} s  {lag:6.0f} ms  {c:4.2f}")
    played = np.flatnonzero(d["has_ref"])
    ref_end = played[-1] + 1 if len(played) else n
    onset_i = d["index_of"](args.onset) if args.onset is not None else max(0, ref_end - int(1.5 * RATE))
    engine = VadEngine()
    p_mic, p_out = probs(engine, mic), probs(engine, out)
    print(f"around the onset ({'given' if args.onset is not None else 'assumed'}: {onset_i / RATE:.2f} s "
          f"into the trace; the reference stops at {ref_end / RATE:.2f} s):")
    print("   ms  | mic dBFS | out dBFS | ref dBFS | p(mic) | p(out)")
    lo = max(0, onset_i - int(args.before * RATE)) // FRAME
    hi = min(n, onset_i + int(args.after * RATE)) // FRAME
    for f in range(lo, hi):
        a, b = f * FRAME, (f + 1) * FRAME
        pm = p_mic[f] if f < len(p_mic) else float("nan")
        po = p_out[f] if f < len(p_out) else float("nan")
        print(f"  {(a - onset_i) * 1000 / RATE:5.0f} | {dbfs(mic[a:b]):8.1f} | {dbfs(out[a:b]):8.1f} | "
              f"{dbfs(ref[a:b]):8.1f} | {pm:6.2f}{' #' if pm > 0.5 else '  '} | {po:5.2f}{' #' if po > 0.5 else ''}")
    hits = energy_onsets(out)
    after = [h for h in hits if h >= onset_i - int(0.1 * RATE)]
    upto = min(onset_i - int(0.1 * RATE), n)
    before = [h for h in hits if RATE <= h < upto]
    print(f"energy rule (the output 20 dB over its last second's median for 40 ms): "
          f"{'-' if not after else f'{(after[0] + 2 * 320 - onset_i) * 1000 / RATE:.0f} ms'} after the onset; "
          f"{len(before)} times in the {max(0, upto - RATE) / RATE:.1f} s before it (after the first second)")
    if args.replay is not None:
        print(f"the VAD's start is decided {heard_after(p_out, onset_i)} ms after the onset on the traced output")
        for shift in args.replay or [0.0]:
            y = replay(mic, ref, d["has_ref"], shift)
            print(f"  replayed, the reference {shift:+.0f} ms: {heard_after(probs(engine, y), onset_i)} ms")


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
