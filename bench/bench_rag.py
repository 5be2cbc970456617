"""RAG benchmark against the real service over gRPC, on the project's docs/
folder (user guide + runbooks) with a private index folder:

- start with no index (full build), then a restart that reloads it;
- Reindex (full re-embedding) duration;
- search latency p50/p95, server-side and client-seen, over varied questions;
- 1 vs 4 concurrent clients: searches per second;
- peak RSS of the service process (VmHWM).

    python -m bench rag            # or: python -m bench.bench_rag [--runs 5]
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import grpc

from bench.stats import peak_rss_mb, percentile
from common.stubs import rag_pb2, rag_pb2_grpc
from tests.procs import running

QUESTIONS = [
    "How do I interrupt the assistant?", "The microphone is blocked", "How do I add my own documents?",
    "Is my voice sent to the cloud?", "What does push to talk do?", "Answers are slow, why?",
    "How do I start the assistant?", "Redis is failing", "A service is down", "How do I change the voice?",
    "What does the silence setting mean?", "Can I type instead of talking?", "Memory is high",
    "The canary has errors", "What is barge-in?", "How long until my turn ends?",
]


async def bench(address: str, runs: int) -> None:
    async with grpc.aio.insecure_channel(address) as ch:
        stub = rag_pb2_grpc.RetrieverStub(ch)
        r = await stub.Reindex(rag_pb2.ReindexRequest(), timeout=600)
        print(f"Reindex (full re-embedding): {r.documents} documents, {r.chunks} chunks in "
              f"{r.duration_ms / 1000:.2f} s ({r.duration_ms / max(r.chunks, 1):.0f} ms per chunk)")
        server, client = [], []
        for _ in range(runs):
            for q in QUESTIONS:
                t0 = time.perf_counter()
                resp = await stub.Search(rag_pb2.SearchRequest(query=q, k=3))
                client.append((time.perf_counter() - t0) * 1000)
                server.append(resp.latency_ms)
        print(f"search latency (server): p50 {percentile(server, 0.5):.1f} ms, p95 {percentile(server, 0.95):.1f} ms; "
              f"client-seen p50 {percentile(client, 0.5):.1f} ms, p95 {percentile(client, 0.95):.1f} ms; n={len(server)}")

        for n in (1, 4):
            async def worker(j: int) -> int:
                done = 0
                for q in QUESTIONS[j::n] * runs:
                    await stub.Search(rag_pb2.SearchRequest(query=q, k=3))
                    done += 1
                return done
            t0 = time.perf_counter()
            total = sum(await asyncio.gather(*(worker(j) for j in range(n))))
            wall = time.perf_counter() - t0
            print(f"{n} concurrent client(s): {total / wall:.1f} searches/s ({total} searches)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv if argv is not None else [])
    with tempfile.TemporaryDirectory(prefix="bench-rag-") as tmp:
        env = {"RAG_INDEX_DIR": str(Path(tmp) / "index")}
        t0 = time.perf_counter()
        with running("services.rag", "RAG_", env) as svc:
            print(f"start with no index (full build, process start included): "
                  f"{time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        with running("services.rag", "RAG_", env) as svc:
            print(f"restart reloading the persisted index: {time.perf_counter() - t0:.1f} s")
            asyncio.run(bench(svc.address, args.runs))
            print(f"peak RSS of the RAG service: {peak_rss_mb(svc.proc.pid):.0f} MB")


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
