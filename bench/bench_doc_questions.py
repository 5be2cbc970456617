"""Spoken questions about the shipped documents, end to end (issue #12): the
questions a user asks the assistant about this platform, spoken at real time
through the Realtime protocol with retrieval on (the default), so every turn
runs retrieval and an LLM prompt with the passages quoted in it.

The audio is synthesised: each question is spoken by the stack's own TTS
service (over gRPC, the voice's native rate, resampled to the session's
24 kHz) with silence around it, so the figures are reproducible without
recordings. Per question: voice-to-voice (last voiced sample -> first audio
delta), the gateway's stage timings (retrieval, LLM first token, prompt
tokens evaluated vs taken from the cache), the passages' sources and the
transcript heard.

    python -m bench doc_questions                 # starts the stack itself
    python -m bench.bench_doc_questions --rounds 2 [--url ws://... --tts 127.0.0.1:50055]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import urllib.request
from typing import Sequence

from bench.bench_e2e import RATE, TURN_TIMEOUT, V2V_TARGET_P50_MS, V2V_TARGET_P95_MS, Clip, pct, verdict
from clients import events
from clients.realtime import RealtimeClient
from clients.speech import voiced_span
from clients.synth import speak

# Questions the shipped documents answer (docs/user-guide.md, docs/runbooks/).
QUESTIONS = (
    "How do I start the assistant?",
    "What should I do when the latency alert fires?",
    "How does the canary release work?",
    "How do I run the tests?",
    "What happens when too many people connect at once?",
    "How do I delete a conversation?",
)
LEAD_S, TAIL_S = 0.5, 2.0


async def synthesise(tts_address: str, text: str) -> Clip:
    audio = await speak(tts_address, text, RATE, LEAD_S, TAIL_S)
    return Clip(text, audio, voiced_span(audio, RATE))


async def one_question(url: str, clip: Clip) -> dict:
    async with RealtimeClient(url, keep_audio=False) as rt:
        await rt.update_session(events.session_config(input_rate=RATE, output_rate=RATE, turn_detection=True))
        utt = rt.start_microphone(RATE).play(clip.pcm)
        done = await rt.wait_for("response.done", timeout=TURN_TIMEOUT)
        first = rt.log.find("response.output_audio.delta")
        heard = rt.log.find("conversation.item.input_audio_transcription.completed")
        resp = done.get("response") or {}
        meta = resp.get("metadata") or {}
        usage = resp.get("usage") or {}
        return {
            "question": clip.name,
            "heard": heard.get("transcript") if heard else None,
            "v2v_ms": (first.t - utt.time_of(clip.span.last_sample)) * 1000 if first else None,
            "timings": json.loads(meta["timings"]) if meta.get("timings") else {},
            "sources": [s.get("source") for s in json.loads(meta["sources"])] if meta.get("sources") else [],
            "prompt_tokens": usage.get("input_tokens"),
            "cached_tokens": (usage.get("input_token_details") or {}).get("cached_tokens"),
            "status": resp.get("status"),
        }


async def run(url: str, tts_address: str, rounds: int) -> list[dict]:
    clips = [await synthesise(tts_address, q) for q in QUESTIONS]
    out = []
    for r in range(rounds):
        for clip in clips:
            res = await one_question(url, clip)
            t = res["timings"]
            print(f"  [{r}] {res['v2v_ms'] or float('nan'):6.0f} ms  retrieval {t.get('retrieval_ms', '-')}  "
                  f"llm {t.get('llm_first_token_ms', '-')}  tokens {res['prompt_tokens']} "
                  f"(cached {res['cached_tokens']})  {res['sources'][:3]}  heard: {res['heard']!r}", flush=True)
            out.append(res)
    return out


def report(results: list[dict]) -> str:
    v2v = [r["v2v_ms"] for r in results if r["v2v_ms"] is not None]
    stage = lambda k: [r["timings"][k] for r in results if k in r["timings"]]  # noqa: E731
    cached = [r["cached_tokens"] / r["prompt_tokens"] for r in results
              if r["prompt_tokens"] and r["cached_tokens"] is not None]
    lines = [
        "| figure | n | p50 | p95 | target |", "|---|---|---|---|---|",
        f"| voice-to-voice, questions about the documents (ms) | {len(v2v)} | {pct(v2v, 50):.0f} | "
        f"{pct(v2v, 95):.0f} | p50 <= {V2V_TARGET_P50_MS:.0f} {verdict(pct(v2v, 50), V2V_TARGET_P50_MS)}, "
        f"p95 <= {V2V_TARGET_P95_MS:.0f} {verdict(pct(v2v, 95), V2V_TARGET_P95_MS)} |",
    ]
    for k in ("retrieval_ms", "asr_final_ms", "llm_first_token_ms", "tts_first_audio_ms"):
        xs = stage(k)
        lines.append(f"| {k} | {len(xs)} | {pct(xs, 50):.0f} | {pct(xs, 95):.0f} | |")
    if cached:
        lines.append(f"| share of the answer's prompt from the LLM's cache | {len(cached)} | "
                     f"{statistics.median(cached):.2f} | | |")
    no_sources = sum(1 for r in results if not r["sources"])
    lines.append(f"\n{len(results)} turns, {no_sources} without passages, "
                 f"{sum(1 for r in results if r['v2v_ms'] is None)} without an audio reply")
    return "\n".join(lines)


def prefill_outcomes(ws_url: str) -> dict[str, float]:
    """The gateway's voice_gateway_llm_prefills_total by outcome (prefill, busy,
    replaced, error): whether the LLM was warmed while each question was
    spoken. Empty when the gateway's /metrics cannot be read."""
    base = "http" + ws_url[2:].split("/v1/", 1)[0] if ws_url.startswith("ws") else ""
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
            text = r.read().decode()
    except (OSError, ValueError):
        return {}
    out: dict[str, float] = {}
    for m in re.finditer(r'^voice_gateway_llm_prefills_total\{[^}]*outcome="(\w+)"[^}]*\} (\S+)$', text, re.M):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Spoken questions about the documents, end to end.")
    p.add_argument("--url", default=os.environ.get("BENCH_E2E_URL", ""),
                   help="gateway WebSocket URL (default: start the whole stack)")
    p.add_argument("--tts", default=os.environ.get("BENCH_TTS_ADDR", "127.0.0.1:50055"),
                   help="TTS gRPC address that speaks the questions, with --url (default 127.0.0.1:50055)")
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_DOC_ROUNDS", "2")),
                   help="passes over the questions (default 2)")
    args = p.parse_args(list(argv or []))
    stack, url, tts = None, args.url, args.tts
    if not url:
        from tests.stack import start_stack
        print("starting the stack (5 services + gateway)...", flush=True)
        stack = start_stack()
        url, tts = stack.ws_url, stack.services["tts"].address
    try:
        results = asyncio.run(run(url, tts, args.rounds))
        prefills = prefill_outcomes(url)
    finally:
        if stack is not None:
            stack.stop()
    print(report(results))
    if prefills:
        print("LLM prefills while the questions were spoken (gateway counter, by outcome): "
              + ", ".join(f"{k} {v:.0f}" for k, v in sorted(prefills.items())))
    print(f"(questions spoken by the stack's TTS, {RATE} Hz input at real time, one fresh session each; "
          f"retrieval on; {os.cpu_count()} CPU cores shared with other work unless stated otherwise)")


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
