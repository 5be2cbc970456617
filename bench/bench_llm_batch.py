"""Separate LLM instances vs one batched context (continuous batching), in
process through LlmEngine as the service builds it (build_engine with the
service's defaults), so the figures are the model and the scheduling, not gRPC:

- for 1, 2, 4 concurrent generations (same prompts, max 64 tokens, sampled
  with a seed): aggregate tokens/s (all tokens / wall time) and time to first
  token (mean and max over the requests);
- ``instances`` = the default 2 separate instances (a third and fourth answer
  wait for a free one); ``batched`` = one context with ``--slots`` sequences;
  ``contexts=2`` = the same slots over two contexts sharing one model.

    python -m bench llm_batch        # or: python -m bench.bench_llm_batch [--slots 4] [--rounds 2]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from services.llm.__main__ import Settings, build_engine
from services.llm.schema import ChatMessage, GenerateDone, GenerateRequest, Sampling, TokenDelta

TOPICS = ["the moon", "bicycles", "tea", "rain", "owls", "trains", "volcanoes", "bread"]
MAX_TOKENS = 64


_turn = iter(range(1, 1 << 30))


def request(i: int) -> GenerateRequest:
    # A new user turn every time (the system prompt stays cached, as in a
    # conversation): repeating a prompt would measure the KV cache, not prefill.
    text = f"Tell me long story number {next(_turn)} about {TOPICS[i % len(TOPICS)]}."
    return GenerateRequest(messages=(ChatMessage("user", text),),
                           max_tokens=MAX_TOKENS, sampling=Sampling(temperature=0.7, seed=i + 1))


async def one(engine, i: int) -> tuple[float, int]:
    """(time to first token ms, tokens)."""
    t0 = time.perf_counter()
    first, n = 0.0, 0
    async for ev in engine.generate(request(i)):
        if isinstance(ev, TokenDelta) and not first:
            first = (time.perf_counter() - t0) * 1000
        elif isinstance(ev, GenerateDone):
            n = ev.completion_tokens
    return first, n


async def round_(engine, n: int) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    res = await asyncio.gather(*(one(engine, i) for i in range(n)))
    wall = time.perf_counter() - t0
    ttfts = [r[0] for r in res]
    return sum(r[1] for r in res) / wall, statistics.mean(ttfts), max(ttfts)


def measure(label: str, settings: Settings, rounds: int, rows: list[str]) -> None:
    t0 = time.perf_counter()
    engine = build_engine(settings)
    load_s = time.perf_counter() - t0
    try:
        asyncio.run(round_(engine, 1))   # settle
        for n in (1, 2, 4):
            figs = [asyncio.run(round_(engine, n)) for _ in range(rounds)]
            tps, mean_ttft, max_ttft = (statistics.median(f[k] for f in figs) for k in range(3))
            rows.append(f"| {label} | {n} | {tps:.0f} | {mean_ttft:.0f} | {max_ttft:.0f} |")
            print(rows[-1], flush=True)
    finally:
        engine.close()
    print(f"({label}: engine built and warmed in {load_s:.1f} s)", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2, help="rounds per figure (median)")
    args = p.parse_args(argv if argv is not None else [])
    rows = ["| backend | concurrent | aggregate tok/s | TTFT mean ms | TTFT max ms |",
            "|---|---|---|---|---|"]
    print("\n".join(rows), flush=True)
    measure("instances=2", Settings(), args.rounds, rows)
    measure(f"batched slots={args.slots}", Settings(batch_slots=args.slots), args.rounds, rows)
    measure(f"batched slots={args.slots} contexts=2", Settings(batch_slots=args.slots, batch_contexts=2),
            args.rounds, rows)


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
