"""LLM benchmark against the real service over gRPC (SmolLM2-135M GGUF by default):

- time to first token for a new conversation and for a follow-up turn of the
  same conversation (KV-cache prefix reuse), server-reported and client-seen,
  and for the same follow-up when nothing can be reused;
- decode speed (tokens/s) of a single stream;
- 1 vs 4 concurrent streams: aggregate tokens/s and per-stream TTFT
  (with the default 2 instances, two of the four wait in the queue);
- cancellation: time from cancel to the service reporting the stream done;
- peak RSS of the service process (VmHWM).

    python -m bench llm            # or: python -m bench.bench_llm [--runs 8] [--instances 2]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import grpc

from bench.stats import peak_rss_mb, percentile
from common.stubs import common_pb2, llm_pb2, llm_pb2_grpc
from tests.procs import running

TOPICS = ["the moon", "bicycles", "tea", "rain", "libraries", "trains", "owls", "volcanoes",
          "bread", "chess", "rivers", "music", "snow", "bees", "maps", "clocks"]


def _fmt(xs: list[float], unit: str = "ms") -> str:
    return f"median {statistics.median(xs):.1f} {unit}, p90 {percentile(xs, 0.9):.1f} {unit}, n={len(xs)}"


def user(text: str) -> llm_pb2.ChatMessage:
    return llm_pb2.ChatMessage(role="user", content=text)


async def one(stub, messages, max_tokens=60) -> tuple[float, str, llm_pb2.GenerateDone, float]:
    """(client TTFT ms, text, done, wall s)."""
    t0 = time.perf_counter()
    first, text, done = None, [], None
    async for r in stub.Generate(llm_pb2.GenerateRequest(
            messages=messages, max_tokens=max_tokens,
            sampling=llm_pb2.SamplingParams(temperature=0.7, seed=1))):
        if r.HasField("delta"):
            if first is None:
                first = (time.perf_counter() - t0) * 1000
            text.append(r.delta.text)
        else:
            done = r.done
    return first or 0.0, "".join(text), done, time.perf_counter() - t0


async def bench(address: str, runs: int) -> None:
    async with grpc.aio.insecure_channel(address) as ch:
        stub = llm_pb2_grpc.ChatStub(ch)
        await one(stub, [user("Hello!")], 5)  # settle

        new_srv, new_cli, follow_srv, follow_cli, tps, prompt_toks = [], [], [], [], [], []
        nocache_srv = []
        for i in range(runs):
            topic = TOPICS[i % len(TOPICS)]
            conv = [user(f"Tell me one short fact about {topic}.")]
            cli, text, done, _ = await one(stub, conv)
            new_srv.append(done.time_to_first_token_ms)
            new_cli.append(cli)
            if done.tokens_per_second:
                tps.append(done.tokens_per_second)
            conv += [llm_pb2.ChatMessage(role="assistant", content=text),
                     user("Tell me one more, even shorter.")]
            cli, _, done, _ = await one(stub, conv)
            follow_srv.append(done.time_to_first_token_ms)
            follow_cli.append(cli)
            prompt_toks.append(done.prompt_tokens)
            # The same follow-up behind a system prompt no instance has seen:
            # nothing can be reused, the whole prompt is decoded.
            fresh = [llm_pb2.ChatMessage(role="system", content=f"Session {i} {time.time()}: be brief.")]
            _, _, done_nc, _ = await one(stub, fresh + conv)
            nocache_srv.append(done_nc.time_to_first_token_ms)
            if done.tokens_per_second:
                tps.append(done.tokens_per_second)
        print(f"TTFT, new conversation (server): {_fmt(new_srv)}; client-seen {_fmt(new_cli)}")
        print(f"TTFT, follow-up turn, ~{statistics.median(prompt_toks):.0f}-token prompt, prefix reused "
              f"(server): {_fmt(follow_srv)}; client-seen {_fmt(follow_cli)}")
        print(f"TTFT, the same follow-up with nothing reusable in the KV cache (server): {_fmt(nocache_srv)}")
        print(f"decode speed, 1 stream: {_fmt(tps, 'tokens/s')}")

        for n in (1, 4):
            rounds = max(2, runs // 2)
            agg, ttfts = [], []
            for r in range(rounds):
                t0 = time.perf_counter()
                res = await asyncio.gather(*(one(stub, [user(f"Describe {TOPICS[(r * n + j) % 16]} "
                                                             f"in three sentences.")], 80)
                                             for j in range(n)))
                wall = time.perf_counter() - t0
                agg.append(sum(d.completion_tokens for _, _, d, _ in res) / wall)
                ttfts += [c for c, _, _, _ in res]
            print(f"{n} concurrent stream(s): aggregate {statistics.median(agg):.1f} tokens/s "
                  f"(median of {rounds} rounds); client TTFT {_fmt(ttfts)}")

        lat = []
        for i in range(max(3, runs // 2)):
            before = await stub.GetStatus(common_pb2.StatusRequest())
            call = stub.Generate(llm_pb2.GenerateRequest(
                messages=[user("Write a very long story about a dragon.")], max_tokens=500))
            n = 0
            async for _ in call:
                n += 1
                if n == 3:
                    t0 = time.perf_counter()
                    call.cancel()
                    break
            while True:
                s = await stub.GetStatus(common_pb2.StatusRequest())
                if s.cancelled_streams > before.cancelled_streams and s.active_streams == 0:
                    lat.append((time.perf_counter() - t0) * 1000)
                    break
                await asyncio.sleep(0.002)
        print(f"cancel -> stream stopped server-side (GetStatus polled every 2 ms): {_fmt(lat)}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--instances", type=int, default=2)
    args = p.parse_args(argv if argv is not None else [])
    t0 = time.perf_counter()
    with running("services.llm", "LLM_", {"LLM_INSTANCES": str(args.instances)}) as svc:
        print(f"service ready in {time.perf_counter() - t0:.1f} s ({args.instances} instances, "
              f"load + warm-up, process start included)")
        asyncio.run(bench(svc.address, args.runs))
        print(f"peak RSS of the LLM service: {peak_rss_mb(svc.proc.pid):.0f} MB")


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
