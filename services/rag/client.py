"""`python -m services.rag.client reindex|search|status`: a small command-line
client of the Retriever service, for people adding documents to docs/.
It talks gRPC like any other client; it imports none of the engine."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys

import grpc

from common.stubs import common_pb2, rag_pb2, rag_pb2_grpc

DEFAULT_ADDRESS = f"127.0.0.1:{os.environ.get('RAG_PORT', '50054')}"


async def run(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.address) as ch:
        stub = rag_pb2_grpc.RetrieverStub(ch)
        try:
            if args.command == "reindex":
                r = await stub.Reindex(rag_pb2.ReindexRequest(), timeout=args.timeout)
                print(f"indexed {r.documents} documents, {r.chunks} passages in {r.duration_ms:.0f} ms")
            elif args.command == "search":
                r = await stub.Search(rag_pb2.SearchRequest(query=" ".join(args.query), k=args.k),
                                      timeout=args.timeout)
                for p in r.passages:
                    print(f"{p.score:.3f}  {p.source} › {p.title}\n       {' '.join(p.text.split())[:160]}")
                print(f"({len(r.passages)} passages in {r.latency_ms:.1f} ms)")
            else:
                s = await stub.GetStatus(common_pb2.StatusRequest(), timeout=args.timeout)
                print(s)
        except grpc.aio.AioRpcError as exc:
            print(f"{args.address}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", default=DEFAULT_ADDRESS, help=f"RAG service (default {DEFAULT_ADDRESS})")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("reindex", help="rebuild the index from the documents folder")
    s = sub.add_parser("search", help="show the passages a question retrieves")
    s.add_argument("query", nargs="+")
    s.add_argument("-k", type=int, default=3, help="passages to show (default 3)")
    sub.add_parser("status", help="the service's stream counts")
    return asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
