"""End-to-end figures over the project's real clips sent at real time, as a
client sees them (clients/realtime.py; nothing from services/ is imported):

- voice-to-voice latency: from the last voiced sample of the user's audio
  (found from the clip's energy, independent of the VAD under test) to the
  first ``response.output_audio.delta`` received; with the per-stage breakdown
  the gateway reports in ``response.metadata.timings``;
- barge-in reaction: from the first voiced sample of speech that interrupts a
  playing reply to ``output_audio_buffer.cleared`` received, 0.5 s into a new
  session's first answer and into a session's second answer (separate
  figures: in the first, the echo canceller has not yet learned that there
  is no echo and may duck the voice);
- endpointing split rate: turns committed per clip (must be exactly 1).

Each turn runs in a fresh session at the protocol's default 24 kHz input.

    python -m bench e2e                       # starts the stack itself
    python -m bench.bench_e2e --rounds 3 --interruptions 8 [--url ws://127.0.0.1:8000/v1/realtime]
    python -m bench.bench_e2e --semantic auto --pause-clips   # semantic_vad, + clips with a pause cut in
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
from typing import Sequence

import numpy as np

from clients import events
from clients.realtime import RealtimeClient
from clients.speech import VoicedSpan, voiced_span
from common.audio import read_wav, resample_pcm16

RATE = 24000
V2V_TARGET_P50_MS, V2V_TARGET_P95_MS = 800.0, 1200.0
BARGE_TARGET_P95_MS = 300.0
STAGES = ("endpoint_ms", "asr_final_ms", "retrieval_ms", "llm_first_token_ms",
          "tts_first_audio_ms", "voice_to_voice_ms")
# per-turn timeline printed as the turns run (gateway's timings, see services/gateway/timings.py)
PER_TURN = ("speech_end_ms", "transcript_ms", "audio_ready_ms", "voice_to_voice_ms")
LONG_REPLY = ("You are a storyteller. Answer every message with a long story of at least "
              "eight full sentences. Never answer briefly.")
TURN_TIMEOUT = 120


@dataclasses.dataclass
class Clip:
    name: str
    pcm: bytes
    span: VoicedSpan


@dataclasses.dataclass
class Turn:
    clip: str
    v2v_ms: float | None          # None: no audio reply
    turns_committed: int
    timings: dict[str, float]
    status: str | None
    vad_end_offset_ms: float | None = None   # server's audio_end_ms minus the energy speech end


@dataclasses.dataclass
class BargeIn:
    clip: str
    reaction_ms: float | None     # None: never cleared
    status: str | None
    reason: str | None
    later: bool = False           # in a session's second answer (the echo detector has decided by then)


def load_clips(pauses: bool = False) -> list[Clip]:
    """The project's clips; with ``pauses`` also each clip with one 600-1200 ms
    pause cut in at a word boundary (bench/bench_turn_model.py, every fifth case)."""
    from tests.procs import clips  # the project's clip list (tests/data/speech)
    out = []
    for path, _ in clips():
        pcm, src = read_wav(path)
        pcm = resample_pcm16(pcm, src, RATE)
        out.append(Clip(path.stem, pcm, voiced_span(pcm, RATE)))
    if pauses:
        from bench.bench_turn_model import LEAD_MS, TAIL_MS, cases
        for name, audio, cuts, _ in cases()[1::5]:
            if cuts:
                pcm = resample_pcm16(audio[LEAD_MS * 32:len(audio) - TAIL_MS * 32], 16000, RATE)
                out.append(Clip(name, pcm, voiced_span(pcm, RATE)))
    return out


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def _response(ev) -> dict:
    return ev.get("response") or {}


SEMANTIC: str | None = None   # eagerness: the sessions use semantic_vad (--semantic)
MIC: str | None = None        # audio.input.noise_reduction type the sessions declare (--mic)


def _session(silence_ms: int | None, instructions: str | None = None) -> dict:
    td = events.server_vad(silence_duration_ms=silence_ms) if silence_ms else True
    if SEMANTIC:
        td = events.semantic_vad(SEMANTIC)
    cfg = events.session_config(input_rate=RATE, output_rate=RATE, turn_detection=td,
                                instructions=instructions)
    if MIC:
        cfg.setdefault("audio", {}).setdefault("input", {})["noise_reduction"] = {"type": MIC}
    return cfg


async def one_turn(url: str, clip: Clip, silence_ms: int | None = None, trailing_s: float = 1.5) -> Turn:
    async with RealtimeClient(url, keep_audio=False) as rt:
        await rt.update_session(_session(silence_ms))
        mic = rt.start_microphone(RATE)
        utt = mic.play(clip.pcm)
        done = await rt.wait_for("response.done", timeout=TURN_TIMEOUT)
        # keep listening a little: a split utterance would commit a second turn
        await asyncio.sleep(trailing_s)
        first = rt.log.find("response.output_audio.delta")
        v2v = (first.t - utt.time_of(clip.span.last_sample)) * 1000 if first else None
        raw = (_response(done).get("metadata") or {}).get("timings")
        stopped = rt.log.find("input_audio_buffer.speech_stopped")
        offset = (stopped.get("audio_end_ms") - utt.stream_ms(clip.span.last_sample)
                  if stopped and isinstance(stopped.get("audio_end_ms"), (int, float)) else None)
        return Turn(clip.name, v2v, len(rt.log.all("input_audio_buffer.committed")),
                    json.loads(raw) if raw else {}, _response(done).get("status"), offset)


async def one_barge_in(url: str, opener: Clip, interrupter: Clip, silence_ms: int | None = None,
                       listen_s: float = 0.5, later: bool = False) -> BargeIn:
    """The voice ``listen_s`` into a long answer to ``opener``: in a new
    session's first answer, or (``later``) in its second, after a first
    short answer heard to its end in silence, as a person would (by then the
    echo detector knows the listener's microphone carries no echo)."""
    async with RealtimeClient(url, keep_audio=False) as rt:
        mic = rt.start_microphone(RATE)
        if later:
            await rt.update_session(_session(silence_ms))
            mark = rt.mark()
            mic.play(opener.pcm)
            await rt.wait_for("output_audio_buffer.stopped", since=mark, timeout=TURN_TIMEOUT)
            await asyncio.sleep(1.0)
        await rt.update_session(_session(silence_ms, LONG_REPLY))
        mark = rt.mark()
        mic.play(opener.pcm)
        first = await rt.wait_for("response.output_audio.delta", since=mark, timeout=TURN_TIMEOUT)
        rid = first.get("response_id")
        await asyncio.sleep(listen_s)
        mark = rt.mark()
        utt = mic.play(interrupter.pcm)
        try:
            cleared = await rt.wait_for("output_audio_buffer.cleared", since=mark, timeout=30)
        except TimeoutError:
            return BargeIn(interrupter.name, None, None, None, later)
        await rt.truncate(first.get("item_id"))
        done = await rt.wait_for("response.done", timeout=30,
                                 where=lambda e: _response(e).get("id") == rid)
        r = _response(done)
        return BargeIn(interrupter.name, (cleared.t - utt.time_of(interrupter.span.first_sample)) * 1000,
                       r.get("status"), (r.get("status_details") or {}).get("reason"), later)


async def run(url: str, rounds: int, interruptions: int, silence_ms: int | None = None,
              pauses: bool = False, later: int = 0) -> tuple[list[Turn], list[BargeIn]]:
    clips = load_clips(pauses)
    turns = []
    for r in range(rounds):
        for c in clips:
            t = await one_turn(url, c, silence_ms)
            turns.append(t)
            stages = " ".join(f"{k.removesuffix('_ms')} {t.timings[k]:.0f}" for k in PER_TURN
                              if isinstance(t.timings.get(k), (int, float)))
            print(f"  v2v {c.name} round {r + 1}: "
                  f"{'-' if t.v2v_ms is None else f'{t.v2v_ms:.0f} ms'}, turns {t.turns_committed}, "
                  f"{t.status} (gateway, ms after the VAD's speech end: {stages})", flush=True)
    by_len = sorted(clips[:5], key=lambda c: len(c.pcm))
    openers, interrupters = by_len[:2], by_len[::-1]
    barges = []
    for i in list(range(interruptions)) + list(range(later)):
        b = await one_barge_in(url, openers[i % len(openers)], interrupters[i % len(interrupters)],
                               silence_ms, later=len(barges) >= interruptions)
        barges.append(b)
        print(f"  barge-in {b.clip} ({'second' if b.later else 'first'} answer): "
              f"{'-' if b.reaction_ms is None else f'{b.reaction_ms:.0f} ms'}, {b.status}/{b.reason}",
              flush=True)
    return turns, barges


def verdict(value: float, target: float) -> str:
    if value != value:
        return "no data"
    return "meets" if value <= target else f"MISSES by {value - target:.0f} ms"


def split(t: Turn) -> bool:
    """Answered as more than one turn, or answered (or cancelled) before the
    speech ended: a turn ended at a pause and the rest of the sentence then
    interrupted its answer. One sentence's answer is never cancelled."""
    return t.turns_committed != 1 or (t.v2v_ms is not None and t.v2v_ms < 0) or t.status == "cancelled"


def report(turns: list[Turn], barges: list[BargeIn], n_clips: int) -> str:
    v2v = [t.v2v_ms for t in turns if t.v2v_ms is not None and not split(t)]
    lines = ["", f"{'figure':<34}{'n':>4}{'p50 ms':>9}{'p95 ms':>9}   target"]
    p50, p95 = pct(v2v, 50), pct(v2v, 95)
    lines.append(f"{'voice-to-voice (client)':<34}{len(v2v):>4}{p50:>9.0f}{p95:>9.0f}   "
                 f"p50 ≤ {V2V_TARGET_P50_MS:.0f}: {verdict(p50, V2V_TARGET_P50_MS)}; "
                 f"p95 ≤ {V2V_TARGET_P95_MS:.0f}: {verdict(p95, V2V_TARGET_P95_MS)}")
    extra = sorted({k for t in turns for k in t.timings} - set(STAGES) - {"speech_end_ms"})
    for k in STAGES + tuple(extra):   # the gateway's own extra stages too, if it reports any
        vals = [t.timings[k] for t in turns if isinstance(t.timings.get(k), (int, float))]
        lines.append(f"{'  ' + k + ' (gateway)':<34}{len(vals):>4}{pct(vals, 50):>9.0f}{pct(vals, 95):>9.0f}")
    medians = {k: pct([t.timings[k] for t in turns if isinstance(t.timings.get(k), (int, float))], 50)
               for k in STAGES[:-1] + tuple(extra)}
    medians = {k: v for k, v in medians.items() if v == v}
    if medians:
        worst = max(medians, key=medians.get)
        lines.append(f"  largest stage at p50: {worst} ({medians[worst]:.0f} ms)")
    # where client and gateway disagree: the VAD's idea of the speech end vs the
    # energy's, and the rest (delivery to the client, microphone framing)
    offs = [t.vad_end_offset_ms for t in turns if t.vad_end_offset_ms is not None]
    lines.append(f"{'  speech end: VAD minus energy':<34}{len(offs):>4}{pct(offs, 50):>9.0f}{pct(offs, 95):>9.0f}")
    gap = [t.v2v_ms - t.timings["voice_to_voice_ms"] for t in turns
           if t.v2v_ms is not None and isinstance(t.timings.get("voice_to_voice_ms"), (int, float))]
    lines.append(f"{'  client minus gateway v2v':<34}{len(gap):>4}{pct(gap, 50):>9.0f}{pct(gap, 95):>9.0f}")
    for later, label in ((False, "barge-in reaction, 1st answer"), (True, "barge-in reaction, 2nd answer")):
        react = [b.reaction_ms for b in barges if b.reaction_ms is not None and b.later == later]
        if not react and later:
            continue
        b95 = pct(react, 95)
        lines.append(f"{label:<34}{len(react):>4}{pct(react, 50):>9.0f}{b95:>9.0f}   "
                     f"p95 ≤ {BARGE_TARGET_P95_MS:.0f}: {verdict(b95, BARGE_TARGET_P95_MS)}")
    splits = [t for t in turns if split(t)]
    lines.append(f"endpointing: {len(splits)} of {len(turns)} clip turns split (committed != 1 turn, or "
                 f"answered before the speech ended; split rate {len(splits) / max(1, len(turns)):.0%}; "
                 f"{n_clips} distinct clips; voice-to-voice above is over the other turns)")
    if splits:
        lines.append("   split: " + ", ".join(t.clip for t in splits))
    missing = len(turns) - len(v2v) - len(splits)
    if missing:
        lines.append(f"!! {missing} turns got no audio reply")
    bad = [b for b in barges if (b.status, b.reason) != ("cancelled", "turn_detected")]
    if bad:
        lines.append(f"!! {len(bad)} of {len(barges)} interrupted replies not cancelled/turn_detected: "
                     + ", ".join(f"{b.status}/{b.reason}" for b in bad))
    if v2v:
        lines.append(f"voice-to-voice mean {statistics.fmean(v2v):.0f} ms, min {min(v2v):.0f}, "
                     f"max {max(v2v):.0f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="End-to-end voice-to-voice and barge-in figures.")
    p.add_argument("--url", default=os.environ.get("BENCH_E2E_URL", ""),
                   help="gateway WebSocket URL (default: start the whole stack)")
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_E2E_ROUNDS", "2")),
                   help="passes over all clips for voice-to-voice (default 2)")
    p.add_argument("--interruptions", type=int,
                   default=int(os.environ.get("BENCH_E2E_INTERRUPTIONS", "6")),
                   help="barge-ins measured in a new session's first answer, 0.5 s in (default 6): "
                        "the echo detector has not decided yet (docs/benchmarks.md)")
    p.add_argument("--later-interruptions", type=int,
                   default=int(os.environ.get("BENCH_E2E_LATER_INTERRUPTIONS", "6")),
                   help="barge-ins measured in a session's second answer, 0.5 s in, after a first "
                        "answer heard to its end (default 6)")
    p.add_argument("--mic", choices=("near_field", "far_field"), default=None,
                   help="the microphone the sessions declare (audio.input.noise_reduction); near_field "
                        "turns the gateway's echo canceller off for them (default: not declared)")
    p.add_argument("--silence-ms", type=int, default=None,
                   help="session silence_duration_ms (default: the gateway's own default)")
    p.add_argument("--semantic", choices=("low", "medium", "high", "auto"), default=None,
                   help="sessions use turn_detection semantic_vad with this eagerness (default: server_vad)")
    p.add_argument("--pause-clips", action="store_true",
                   help="also speak each clip with a 600-1200 ms pause cut in (one turn expected)")
    args = p.parse_args(list(argv or []))
    global SEMANTIC, MIC
    SEMANTIC, MIC = args.semantic, args.mic
    stack = None
    url = args.url
    if not url:
        from tests.stack import start_stack
        print("starting the stack (5 services + gateway)...", flush=True)
        stack = start_stack()
        url = stack.ws_url
    try:
        turns, barges = asyncio.run(run(url, args.rounds, args.interruptions, args.silence_ms,
                                        args.pause_clips, args.later_interruptions))
    finally:
        if stack is not None:
            stack.stop()
    print(report(turns, barges, len({t.clip for t in turns})))
    print(f"(turn_detection: {'semantic_vad ' + args.semantic if args.semantic else 'server_vad'}; "
          f"microphone declared: {args.mic or 'none'}; "
          f"silence_duration_ms: {args.silence_ms or 'gateway default'}; real clips at real time, {RATE} Hz input; percentiles interpolated over n samples; "
          f"taken on {os.cpu_count()} CPU cores shared with other work unless stated otherwise)")


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
