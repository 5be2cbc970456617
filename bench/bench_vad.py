"""VAD benchmark: model ms per 32 ms frame (in process), and the real service
over gRPC: frames/s for 1 and 4 concurrent streams, event latency figures,
peak RSS. Prints numbers; run with `python -m bench vad`."""
from __future__ import annotations

import asyncio
import statistics
import time

import grpc

from bench.stats import peak_rss_mb
from common.audio import read_wav, silence
from common.stubs import vad_pb2, vad_pb2_grpc
from tests.procs import clips, running

FRAME_BYTES = 1024
CHUNK_BYTES = 3200  # 100 ms per message, as a browser-fed gateway would send


def _audio() -> bytes:
    """All LibriVox clips, each with 1 s of silence on both sides (~35 s)."""
    out = b""
    for wav, _ in clips():
        pcm, _ = read_wav(wav)
        out += silence(1000, 16000) + pcm + silence(1000, 16000)
    return out


def bench_engine(audio: bytes) -> float:
    from services.vad.engine import VadEngine
    from services.vad.segmenter import SegmenterParams

    eng = VadEngine(threads=1)
    eng.open(SegmenterParams()).push(audio[:32000])  # warm-up
    s = eng.open(SegmenterParams())
    r = s.push(audio)
    return statistics.median(r.frame_seconds) * 1000


async def _stream(address: str, audio: bytes) -> tuple[float, int]:
    async def requests():
        yield vad_pb2.DetectRequest(config=vad_pb2.VadConfig())
        for i in range(0, len(audio), CHUNK_BYTES):
            yield vad_pb2.DetectRequest(audio=audio[i:i + CHUNK_BYTES])

    t0 = time.perf_counter()
    async with grpc.aio.insecure_channel(address) as ch:
        events = [r async for r in vad_pb2_grpc.VoiceActivityStub(ch).StreamingDetect(requests())]
    return time.perf_counter() - t0, len(events)


async def _concurrent(address: str, audio: bytes, n: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    results = await asyncio.gather(*[_stream(address, audio) for _ in range(n)])
    wall = time.perf_counter() - t0
    frames = n * (len(audio) // FRAME_BYTES)
    return frames / wall, max(r[0] for r in results)


def main() -> None:
    audio = _audio()
    frames = len(audio) // FRAME_BYTES
    print(f"audio: {len(audio) / 32000:.1f} s = {frames} frames of 32 ms, sent in 100 ms chunks")
    print(f"engine (in process, 1 thread): {bench_engine(audio):.3f} ms per 32 ms frame (median)")
    with running("services.vad", "VAD_") as svc:
        asyncio.run(_stream(svc.address, audio[:64000]))  # warm-up
        for n in (1, 4):
            fps, slowest = asyncio.run(_concurrent(svc.address, audio, n))
            print(f"service, {n} stream(s): {fps:,.0f} frames/s in total "
                  f"({fps * 0.032:,.0f}x real time), {1000 / (fps / n):.3f} ms per frame per stream, "
                  f"slowest stream {slowest:.2f} s")
        print(f"service peak RSS (VmHWM): {peak_rss_mb(svc.proc.pid):.0f} MB")


if __name__ == "__main__":
    main()
