"""TTS benchmark against the real service over gRPC: time to first audio for
a short and a long sentence, real-time factor, 1 vs 4 concurrent streams,
peak RSS. Prints numbers; run with `python -m bench tts`."""
from __future__ import annotations

import asyncio
import statistics
import time

import grpc

from bench.stats import peak_rss_mb
from common.stubs import tts_pb2, tts_pb2_grpc
from tests.procs import running

SHORT = "Sure, I can help with that."
LONG = ("The quarterly report shows that revenue grew by twelve percent compared with last year, "
        "mostly thanks to strong sales in the northern region and a successful product launch in the spring.")
PARAGRAPH = ("Voice assistants work best when they answer quickly. The first words should arrive while the "
             "rest of the answer is still being prepared. That is why this service synthesises speech "
             "clause by clause, and sends each piece as soon as it exists. If the user interrupts, the "
             "remaining clauses are never synthesised at all.")
RUNS = 5


async def _one(stub, text: str) -> tuple[float, float, float]:
    """(time to first audio, total wall time, audio seconds)."""
    t0 = time.perf_counter()
    ttfa, samples, rate = None, 0, 22050
    async for c in stub.Synthesize(tts_pb2.SynthesizeRequest(text=text)):
        if ttfa is None and c.audio:
            ttfa = time.perf_counter() - t0
        samples += len(c.audio) // 2
        rate = c.sample_rate_hz
    return ttfa or float("nan"), time.perf_counter() - t0, samples / rate


async def _run(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as ch:
        stub = tts_pb2_grpc.SynthesizerStub(ch)
        await _one(stub, "Warm up.")
        for name, text in (("short", SHORT), ("long", LONG)):
            res = [await _one(stub, text) for _ in range(RUNS)]
            ttfa = statistics.median(r[0] for r in res) * 1000
            print(f"time to first audio, {name} sentence ({len(text.split())} words): "
                  f"{ttfa:.0f} ms (median of {RUNS}; whole sentence "
                  f"{statistics.median(r[1] for r in res) * 1000:.0f} ms for "
                  f"{statistics.median(r[2] for r in res):.2f} s of audio)")
        res = [await _one(stub, PARAGRAPH) for _ in range(3)]
        rtf = statistics.median(r[1] / r[2] for r in res)
        print(f"real-time factor, {len(PARAGRAPH.split())}-word paragraph: {rtf:.3f} "
              f"(wall time / audio time, median of 3)")
        for n in (1, 4):
            t0 = time.perf_counter()
            res = await asyncio.gather(*[_one(stub, PARAGRAPH) for _ in range(n)])
            wall = time.perf_counter() - t0
            audio = sum(r[2] for r in res)
            print(f"{n} concurrent stream(s): {audio / wall:.1f} s of audio per second in total, "
                  f"TTFA median {statistics.median(r[0] for r in res) * 1000:.0f} ms, "
                  f"max {max(r[0] for r in res) * 1000:.0f} ms, per-stream RTF "
                  f"{statistics.median(r[1] / r[2] for r in res):.3f}")


def main() -> None:
    t0 = time.perf_counter()
    with running("services.tts", "TTS_") as svc:
        print(f"service start to SERVING (voice load + warm-up): {time.perf_counter() - t0:.1f} s")
        asyncio.run(_run(svc.address))
        print(f"service peak RSS (VmHWM): {peak_rss_mb(svc.proc.pid):.0f} MB")


if __name__ == "__main__":
    main()
