"""CPU per unit of work, where threads and messages waste it (issue #11):

- ASR: CPU and wall time of one interim and one final pass, in a child
  process per BLAS setting (numpy's OpenBLAS threads spin after each call; the
  services hold them to one thread, services/__init__.py).
- VAD service: CPU per stream of real-time audio sent in 20, 32 and 64 ms
  messages (the gateway sends whole 32 ms frames, settings vad_chunk_ms).
- TTS: CPU per second of speech with 1 and 2 onnxruntime threads.

Figures are CPU seconds from /proc or ``time.process_time``: they hold on a
busy machine far better than wall times do. Run: `python -m bench cpu`."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from common.audio import read_wav
from clients.clips import clips
from tests.procs import running

ASR_CHILD = r"""
import os, sys, threading, time
import numpy as np
from common.audio import read_wav
from services.asr import models
from services.asr.engine import EngineOptions, WhisperEngine
pcm, _ = read_wav(sys.argv[1])
a = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768
eng = WhisperEngine(str(models.resolve("base")), EngineOptions(threads=1, num_workers=1, interim_nice=0))
eng.warmup()
never = threading.Event()
for kind in ("interim", "final"):
    lens = (0.8, 1.6, 2.4, 3.2, 4.0) if kind == "interim" else (2.0, 4.0)
    cpu = wall = 0.0
    for _ in range(3):
        for s in lens:
            x = a[: int(s * 16000)]
            c0, t0 = time.process_time(), time.perf_counter()
            if kind == "interim":
                eng.transcribe_interim(x, "en", never)
            else:
                eng.transcribe_final(x, "en", 1, never)
            cpu += time.process_time() - c0
            wall += time.perf_counter() - t0
    n = 3 * len(lens)
    print(f"  ASR {kind} pass (OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}): "
          f"wall {1000 * wall / n:.0f} ms, CPU {1000 * cpu / n:.0f} ms")
"""


def bench_asr(wav: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for blas in ("2", "1"):
        out = subprocess.run([sys.executable, "-c", ASR_CHILD, wav], env=env | {"OPENBLAS_NUM_THREADS": blas},
                             capture_output=True, text=True, timeout=600)
        print(out.stdout.rstrip() or out.stderr[-2000:])


def _proc_cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _vad_streams(address: str, pcm: bytes, streams: int, chunk_ms: int, seconds: float) -> None:
    import grpc

    from common.stubs import vad_pb2, vad_pb2_grpc

    step = 32 * chunk_ms

    async def one(stub) -> None:
        async def requests():
            yield vad_pb2.DetectRequest(config=vad_pb2.VadConfig(pause_events=True))
            t0, i = time.monotonic(), 0
            while time.monotonic() - t0 < seconds:
                off = (i * step) % (len(pcm) - step)
                yield vad_pb2.DetectRequest(audio=pcm[off:off + step])
                i += 1
                await asyncio.sleep(max(0.0, t0 + i * chunk_ms / 1000 - time.monotonic()))
        async for _ in stub.StreamingDetect(requests()):
            pass

    async with grpc.aio.insecure_channel(address) as ch:
        stub = vad_pb2_grpc.VoiceActivityStub(ch)
        await asyncio.gather(*(one(stub) for _ in range(streams)))


def bench_vad(pcm: bytes, streams: int = 2, seconds: float = 15.0) -> None:
    with running("services.vad", "VAD_") as svc:
        asyncio.run(_vad_streams(svc.address, pcm, 1, 32, 2.0))   # warm-up
        for chunk_ms in (20, 32, 64):
            c0 = _proc_cpu(svc.proc.pid)
            asyncio.run(_vad_streams(svc.address, pcm, streams, chunk_ms, seconds))
            per = (_proc_cpu(svc.proc.pid) - c0) / seconds / streams
            print(f"  VAD service, {streams} real-time streams in {chunk_ms} ms messages: "
                  f"{per:.3f} cores per stream")


def bench_tts() -> None:
    from services.tts.voices import load_voices

    text = ["The capital of France is Paris.", "It is known for the Eiffel Tower, its museums, and its cafes.",
            "Would you like to know more about its history?"]
    for threads in (1, 2):
        voice = next(iter(load_voices(threads=threads).values()))
        list(voice.synthesize("Warm up.", 1.0))
        c0, t0, nbytes = time.process_time(), time.perf_counter(), 0
        for _ in range(3):
            for sentence in text:
                nbytes += sum(len(b) for b in voice.synthesize(sentence, 1.0))
        audio_s = nbytes / 2 / 22050
        print(f"  TTS, {threads} thread(s): {audio_s:.1f} s of speech in {time.perf_counter() - t0:.2f} s, "
              f"{(time.process_time() - c0) / audio_s:.3f} CPU s per second of speech")


def main() -> None:
    wav = str(clips()[0][0])
    print(f"clip: {wav}")
    bench_asr(wav)
    pcm, _ = read_wav(wav)
    bench_vad(pcm)
    bench_tts()


if __name__ == "__main__":
    main()
