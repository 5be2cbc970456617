"""Endpointing on real speech: how long a silence window the gateway needs so
that no utterance of the project's clips (tests/data/speech) is split in two.

Each clip (+1.5 s of silence) goes through the real VAD service with the
gateway's VAD settings (min_speech 120 ms, min_silence 160 ms). A turn
continues when the next segment's speech_started is decided before
``speech end + silence_duration_ms``, so the window must be longer than the
largest (next start decided_at − previous end) inside a clip. Prints that
gap per clip, the split rate for several windows, and the default's margin."""
from __future__ import annotations

import asyncio
import dataclasses

import grpc

from common.audio import read_wav, silence
from common.stubs import vad_pb2, vad_pb2_grpc
from services.gateway.settings import GatewaySettings
from tests.procs import clips, running

WINDOWS_MS = (300, 400, 500, 600, 700, 800, 1000)


async def segments(address: str, pcm: bytes, s: GatewaySettings) -> list[tuple[str, int, int]]:
    async with grpc.aio.insecure_channel(address) as ch:
        call = vad_pb2_grpc.VoiceActivityStub(ch).StreamingDetect()
        await call.write(vad_pb2.DetectRequest(config=vad_pb2.VadConfig(
            threshold=s.vad_threshold, min_speech_ms=s.vad_min_speech_ms,
            min_silence_ms=s.vad_min_silence_ms, prefix_padding_ms=s.prefix_padding_ms, sample_rate_hz=16000)))
        for i in range(0, len(pcm), 640):
            await call.write(vad_pb2.DetectRequest(audio=pcm[i:i + 640]))
        await call.done_writing()
        out = []
        async for r in call:
            if r.HasField("speech_started"):
                out.append(("start", r.speech_started.audio_ms, r.speech_started.decided_at_ms))
            elif r.HasField("speech_stopped"):
                out.append(("stop", r.speech_stopped.audio_ms, r.speech_stopped.decided_at_ms))
        return out


def gaps(evs: list[tuple[str, int, int]]) -> list[int]:
    """For each pause inside the clip: next start's decision time − previous end of speech."""
    out, last_end = [], None
    for kind, ms, decided in evs:
        if kind == "stop":
            last_end = ms
        elif last_end is not None:
            out.append(decided - last_end)
    return out


def pauses(evs: list[tuple[str, int, int]]) -> list[int]:
    """Silences between voiced stretches: next onset − previous end."""
    out, last_end = [], None
    for kind, ms, _ in evs:
        if kind == "stop":
            last_end = ms
        elif last_end is not None:
            out.append(ms - last_end)
    return out


def main() -> None:
    s = GatewaySettings()
    fine = dataclasses.replace(s, vad_min_silence_ms=32)
    with running("services.vad", "VAD_") as vad:
        per_clip, all_pauses = {}, {}
        for wav, _ in clips():
            pcm, rate = read_wav(wav)
            assert rate == 16000
            audio = pcm + silence(1500, 16000)
            per_clip[wav.name] = gaps(asyncio.run(segments(vad.address, audio, s)))
            all_pauses[wav.name] = pauses(asyncio.run(segments(vad.address, audio, fine)))
    print("pauses inside each clip as the VAD sees them (min_silence 32 ms), ms:")
    for name, p in all_pauses.items():
        print(f"  {name}: {sorted(p, reverse=True)[:8]}")
    longest = max((max(p) for p in all_pauses.values() if p), default=0)
    print(f"longest within-utterance pause: {longest} ms")
    print(f"VAD as the gateway runs it: threshold {s.vad_threshold}, min_speech {s.vad_min_speech_ms} ms, "
          f"min_silence {s.vad_min_silence_ms} ms")
    for name, g in per_clip.items():
        print(f"  {name}: {len(g) + 1} VAD segments, pause gaps (next start decided − end) ms: {g}")
    worst = max((max(g) for g in per_clip.values() if g), default=0)
    print(f"largest within-utterance gap: {worst} ms")
    for w in WINDOWS_MS:
        split = sum(1 for g in per_clip.values() if any(x >= w for x in g))
        print(f"  silence_duration_ms={w}: {split}/{len(per_clip)} clips split "
              f"({100.0 * split / len(per_clip):.0f} %)")
    d = s.silence_duration_ms
    print(f"default silence_duration_ms={d}: margin {d - worst} ms over the largest gap")


if __name__ == "__main__":
    main()
