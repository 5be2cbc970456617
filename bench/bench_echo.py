"""Echo: a user on loudspeakers (issue #13). The client (clients/echo.py)
feeds the assistant audio it plays back into its microphone with a delay,
attenuation, a small reverberation and noise; clients/echo_talk.py runs the
two scenarios:

- false interruptions under echo: a long answer plays to its end with its
  echo in the microphone; an answer the assistant cut itself (cancelled, or
  a user turn made of its echo) is a false interruption. Pauses (the VAD
  took the echo for speech, the answer stopped and resumed) are counted too.
- barge-in under echo: a real clip spoken over the answer and its echo;
  reaction = its first voiced sample → output_audio_buffer.cleared
  (target p95 ≤ 300 ms, as without echo).

Over several rooms (delays 60-250 ms, levels -20 to -6 dB). With
``--compare`` the same runs go to a second gateway with the echo canceller
off (GATEWAY_ECHO_CANCEL=false: only the transcript guard), on the same services.

    python -m bench echo                       # starts the stack itself
    python -m bench.bench_echo --rooms quick --compare [--url ws://127.0.0.1:8000/v1/realtime]
"""
from __future__ import annotations

import argparse
import asyncio
import os
from typing import Sequence

import numpy as np

from clients.clips import Clip, load_clips
from clients.echo import Room
from clients.echo_talk import BargedIn, Listened, barge_in, listen_through
from clients.speech import voiced_span
from common.audio import resample_pcm16

RATE = 24000
BARGE_TARGET_P95_MS = 300.0
ROOMS = {
    "full": [Room(delay_ms=d, level_db=l, seed=i) for i, (d, l) in enumerate(
        (d, l) for d in (60, 120, 250) for l in (-20, -10, -6))],
    "quick": [Room(delay_ms=d, level_db=l, seed=i) for i, (d, l) in enumerate(
        ((60, -6), (120, -10), (250, -6), (250, -20)))],
    # The slow room of the full grid, three times (diagnosis with GATEWAY_ECHO_TRACE_DIR).
    "late-loud": [Room(delay_ms=250, level_db=-6, seed=i) for i in range(3)],
}


def clips24() -> list[Clip]:
    out = []
    for c in load_clips():
        pcm = resample_pcm16(c.pcm, c.rate, RATE)
        out.append(Clip(c.name, pcm, RATE, voiced_span(pcm, RATE), c.text))
    return out


async def run(url: str, rooms: Sequence[Room], label: str) -> tuple[list[Listened], list[BargedIn]]:
    cs = sorted(clips24(), key=lambda c: c.seconds)
    listened, barged = [], []
    for i, room in enumerate(rooms):
        question, voice = cs[i % 2], cs[-1 - i % 2]
        h = await listen_through(url, RATE, room, question)
        listened.append(h)
        print(f"  [{label}] {room.delay_ms:3.0f} ms {room.level_db:4.0f} dB  answer {h.status}, played "
              f"{h.played_s:5.1f} s, paused {h.pauses}x, user turns {h.user_turns}", flush=True)
        b = await barge_in(url, RATE, room, question, voice)
        barged.append(b)
        print(f"  [{label}] {room.delay_ms:3.0f} ms {room.level_db:4.0f} dB  barge-in "
              f"{'-' if b.reaction_ms is None else f'{b.reaction_ms:.0f} ms'}, {b.status}/{b.reason}"
              f"{', paused by the echo before the user spoke' if b.early else ''}"
              f"{', the answer had ended before the voice' if b.ended_first else ''}"
              f"{f' (voice onset at t = {b.onset_t:.3f})' if b.onset_t is not None else ''}", flush=True)
    return listened, barged


def report(label: str, listened: list[Listened], barged: list[BargedIn]) -> str:
    empty = sum(h.status == "no audio" for h in listened) + sum(b.status == "no audio" for b in barged)
    listened = [h for h in listened if h.status != "no audio"]   # the LLM said nothing: not counted
    ended = sum(b.ended_first for b in barged)        # played out before the voice: nothing to cut
    barged = [b for b in barged if b.status != "no audio" and not b.ended_first]
    n = len(listened)
    cut = sum(h.interrupted for h in listened)
    minutes = sum(h.played_s for h in listened) / 60
    pauses = sum(h.pauses for h in listened)
    reactions = [b.reaction_ms for b in barged if b.reaction_ms is not None]
    confirmed = sum((b.status, b.reason) == ("cancelled", "turn_detected") for b in barged)
    p50 = float(np.percentile(reactions, 50)) if reactions else float("nan")
    p95 = float(np.percentile(reactions, 95)) if reactions else float("nan")
    verdict = "no data" if p95 != p95 else ("meets" if p95 <= BARGE_TARGET_P95_MS else
                                             f"MISSES by {p95 - BARGE_TARGET_P95_MS:.0f} ms")
    return "\n".join([
        f"[{label}]",
        f"  false interruptions under echo: {cut}/{n} answers cut by their own echo "
        f"({100 * cut / max(n, 1):.0f}%); {pauses} pauses in {minutes:.1f} min of answer "
        f"({pauses / max(minutes, 1e-9):.1f} per min)",
        f"  ({empty} answers without audio, {ended} that ended before the voice began, left out)\n"
        f"  barge-in under echo: {len(reactions)}/{len(barged)} cleared, {confirmed} cancelled (turn_detected); "
        f"reaction p50 {p50:.0f} ms, p95 {p95:.0f} ms (target p95 ≤ {BARGE_TARGET_P95_MS:.0f}: {verdict})",
    ])


def _gateway_without_canceller(stack):
    from common.components import GATEWAY
    from tests.procs import ServiceProcess

    env = {f"GATEWAY_{n.upper()}_ADDRS": p.address for n, p in stack.services.items()}
    env |= {"GATEWAY_REDIS_URL": "", "GATEWAY_MAX_SESSIONS": "0", "GATEWAY_ECHO_CANCEL": "false"}
    return ServiceProcess(GATEWAY.module, GATEWAY.env_prefix, env, grpc_service=False).start(timeout=120)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="False interruptions and barge-in under echo.")
    p.add_argument("--url", default=os.environ.get("BENCH_ECHO_URL", ""),
                   help="gateway WebSocket URL (default: start the whole stack)")
    p.add_argument("--rooms", choices=sorted(ROOMS), default=os.environ.get("BENCH_ECHO_ROOMS", "quick"),
                   help="quick: 4 rooms; full: 3 delays x 3 levels (default quick)")
    p.add_argument("--compare", action="store_true",
                   help="also run against a gateway with the echo canceller off (needs the stack started here)")
    args = p.parse_args(list(argv or []))
    stack, url, off = None, args.url, None
    if not url:
        from tests.stack import start_stack
        print("starting the stack (5 services + gateway)...", flush=True)
        stack = start_stack()
        url = stack.ws_url
    try:
        results = {"echo canceller on": asyncio.run(run(url, ROOMS[args.rooms], "on"))}
        if args.compare and stack is not None:
            off = _gateway_without_canceller(stack)
            results["echo canceller off (transcript guard only)"] = asyncio.run(
                run(f"ws://{off.address}/v1/realtime", ROOMS[args.rooms], "off"))
    finally:
        if off is not None:
            off.stop()
        if stack is not None:
            stack.stop()
    for label, (listened, barged) in results.items():
        print(report(label, listened, barged))
    print(f"(rooms: {args.rooms}; a long story per answer; reverb 120 ms, noise -60 dBFS; {RATE} Hz; "
          f"taken on {os.cpu_count()} CPU cores shared with other work unless stated otherwise)")


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
