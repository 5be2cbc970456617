"""First token by turn number in one long conversation (issue #12).

One session, N text turns through the gateway (``conversation.item.create`` +
``response.create``, text out so speech synthesis does not blur the figure),
a short think time between turns as a person would take. For each turn it
prints the LLM's first token as the gateway measured it (request to first
token, ``response.metadata.timings``) and as the client saw it
(``response.create`` sent to the first text delta), and the prompt tokens
the LLM evaluated versus took from its cache.

The history window (``GATEWAY_HISTORY_ITEMS``, 24) moves in blocks
(services/gateway/history.py), and after each answer the gateway warms the
LLM with the next turn's prompt prefix, so a move is paid in the background.
``--no-warm`` runs the stack with ``GATEWAY_LLM_PREFILL=false`` for the
comparison.

    python -m bench long_conversation            # starts the stack itself, 50 turns
    python -m bench.bench_long_conversation --turns 50 [--no-warm] [--url ws://127.0.0.1:8000/v1/realtime]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Sequence

from clients.realtime import RealtimeClient

INSTRUCTIONS = "You are a helpful assistant. Answer every question in two short sentences."
TOPICS = ("the moon", "bread", "rivers", "owls", "glass", "trains", "tea", "volcanoes", "chess",
          "bees", "maps", "clocks", "salt", "bridges", "paper", "whales", "copper", "kites")


def question(i: int) -> str:
    return f"Question {i + 1}: tell me one fact about {TOPICS[i % len(TOPICS)]}."


async def run(url: str, turns: int, think_s: float) -> list[dict]:
    rows = []
    async with RealtimeClient(url) as c:
        await c.request({"type": "session.update", "session": {
            "type": "realtime", "instructions": INSTRUCTIONS, "output_modalities": ["text"],
            "audio": {"input": {"turn_detection": None}}}}, "session.updated")
        for i in range(turns):
            await c.request({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": question(i)}]}},
                "conversation.item.added")
            since = c.mark()
            sent = time.monotonic()
            await c.send({"type": "response.create"})
            first = await c.wait_for("response.output_text.delta", since=since, timeout=120)
            done = await c.wait_for("response.done", since=since, timeout=120)
            timings = json.loads(done.data["response"].get("metadata", {}).get("timings", "{}") or "{}")
            usage = done.data["response"].get("usage") or {}
            details = usage.get("input_token_details") or {}
            rows.append({"turn": i + 1, "client_ms": (first.t - sent) * 1000.0,
                         "llm_first_token_ms": timings.get("llm_first_token_ms"),
                         "prompt": usage.get("input_tokens"), "cached": details.get("cached_tokens"),
                         "status": done.data["response"]["status"]})
            r = rows[-1]
            print(f"turn {r['turn']:3d}: first token {r['llm_first_token_ms'] or float('nan'):7.0f} ms "
                  f"(client {r['client_ms']:6.0f} ms), prompt {r['prompt']} tokens, cached {r['cached']}",
                  flush=True)
            await asyncio.sleep(think_s)
    return rows


def summary(rows: list[dict]) -> str:
    def pct(vals: list[float], q: float) -> float:
        vals = sorted(vals)
        return vals[min(len(vals) - 1, int(round(q * (len(vals) - 1))))]
    out = ["| turns | LLM first token p50 | p95 | max | client first delta p50 |", "|---|---|---|---|---|"]
    for lo, hi in ((1, 10), (11, 25), (26, 50), (51, 10**6)):
        part = [r for r in rows if lo <= r["turn"] <= hi and r["llm_first_token_ms"] is not None]
        if not part:
            continue
        ft = [r["llm_first_token_ms"] for r in part]
        out.append(f"| {lo}-{min(hi, rows[-1]['turn'])} | {statistics.median(ft):.0f} ms | {pct(ft, 0.95):.0f} ms "
                   f"| {max(ft):.0f} ms | {statistics.median(r['client_ms'] for r in part):.0f} ms |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="LLM first token by turn number in one long conversation.")
    p.add_argument("--url", default=os.environ.get("BENCH_LONG_URL", ""),
                   help="gateway WebSocket URL (default: start the whole stack)")
    p.add_argument("--turns", type=int, default=int(os.environ.get("BENCH_LONG_TURNS", "50")))
    p.add_argument("--think-s", type=float, default=1.5, help="pause between an answer and the next question")
    p.add_argument("--no-warm", action="store_true", help="start the stack with GATEWAY_LLM_PREFILL=false")
    args = p.parse_args(list(argv or []))
    stack, url = None, args.url
    if not url:
        from tests.stack import start_stack
        print("starting the stack (5 services + gateway)...", flush=True)
        stack = start_stack(gateway_env={"GATEWAY_LLM_PREFILL": "false"} if args.no_warm else None)
        url = stack.ws_url
    try:
        rows = asyncio.run(run(url, args.turns, args.think_s))
    finally:
        if stack is not None:
            stack.stop()
    print(summary(rows))
    print(f"({args.turns} text turns in one session, think {args.think_s} s, warm-up "
          f"{'off' if args.no_warm else 'on'}; {os.cpu_count()} CPU cores shared with other work unless stated)")


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
