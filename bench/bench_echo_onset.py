"""Barge-in onset through the echo canceller, offline: how much later the
VAD hears a user who starts talking over a converged, loud echo, with the
reference perfectly aligned (the far end fed to AEC3 exactly as played).

Why: on the stack (bench_echo.py) the 250 ms / -6 dB room's barge-in is the
slow one run after run (756, 826 ms against ~150-300 elsewhere), and AEC3's
double-talk suppression was the suspect. This isolates AEC3 + silero from
everything the stack adds (the reference's timing from the client's playback
reports, network chunks, the VAD service's stream): if the onset is late
here too, the canceller is the cause; if not, the stack's alignment is.

Far end: three clips back to back (bench_echo_canceller's synthetic room,
noise at -55 dBFS), raised by ``--far-db`` (default 6: on the stack the
TTS plays at -16 to -19 dBFS active, the user clips at -22 to -27, so the
answer is ~6 dB louder than the user; at 0 both are at the clips' level,
which hid the delay); the user: clip 0870 from 2 s or 5 s in, over the
answer and its echo. Reported per room and seed: the first voiced frame
(silero, 32 ms frames, threshold 0.5) at or after the user's start, through
the canceller, minus the first voiced frame of the user alone.

    python -m bench echo_onset                   # the answer +6 dB, the reference as played
    python -m bench.bench_echo_onset --far-db 0 --ref-lead 50
"""
from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np

from bench.bench_echo_canceller import NOISE_DBFS, _speech, cancel, room
from bench.bench_echo_talkover import FRAME_MS, vad
from services.gateway.echo import RATE

ROOMS = [(d, lv) for d in (60, 120, 250, 400) for lv in (-20, -10, -6)]
USER_AT = (2.0, 5.0)
SEEDS = (1, 2)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Barge-in onset through the echo canceller, offline.")
    p.add_argument("--far-db", type=float, default=6.0, help="the answer's level over the user's (dB)")
    p.add_argument("--ref-lead", type=float, default=None, metavar="MS",
                   help="feed the reference only MS ahead of the echo (default: as played, the room's delay ahead)")
    args = p.parse_args(list(argv or []))
    far = np.concatenate([_speech("0880"), _speech("0890"), _speech("0920")]) * 10 ** (args.far_db / 20)
    near = _speech("0870")
    n = len(far)
    noise = np.random.default_rng(7).normal(0, 32768 * 10 ** (NOISE_DBFS / 20), n)
    lead = "as played" if args.ref_lead is None else f"{args.ref_lead:.0f} ms ahead of the echo"
    print(f"onset delay through the canceller (ms; the user alone = 0), per seed; the answer {args.far_db:+.0f} dB, "
          f"the reference {lead}")
    print(f"{'room':16s} | " + " | ".join(f"user at {at:.0f} s" for at in USER_AT))
    delays: list[float] = []
    for d, lv in ROOMS:
        cells = []
        for at in USER_AT:
            user = np.zeros(n)
            s = int(at * RATE)
            user[s:s + len(near)] = near[:n - s]
            alone = vad(user + noise).find("#") * FRAME_MS
            k0 = int(at * 1000 / FRAME_MS)
            row = []
            shift = 0 if args.ref_lead is None else max(0, int((d - args.ref_lead) * RATE / 1000))
            ref = np.concatenate([np.zeros(shift), far])[:n]
            for seed in SEEDS:
                mic = room(far, d, lv, np.random.default_rng(seed)) + user + noise
                heard = vad(cancel(ref, mic)[0]).find("#", k0)
                delay = heard * FRAME_MS - alone if heard >= 0 else float("nan")
                delays.append(delay)
                row.append(f"{delay:5.0f}")
            cells.append(" ".join(row).ljust(12))
        print(f"{d:3d} ms {lv:4d} dB    | " + " | ".join(cells))
    ok = [x for x in delays if x == x]
    print(f"all: p50 {np.percentile(ok, 50):.0f} ms, p95 {np.percentile(ok, 95):.0f} ms, max {max(ok):.0f} ms "
          f"(n = {len(ok)}; {len(delays) - len(ok)} never heard)")


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
