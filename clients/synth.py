"""Questions spoken by the stack's own TTS service, for clients that need
spoken audio of a text without a recording: the document-question bench and
the load test's document questions (issue #12, #11). Over gRPC, at the
voice's native rate, resampled to the caller's rate, with silence around it
as a microphone would stream it."""
from __future__ import annotations

import grpc

from common.audio import resample_pcm16, silence
from common.stubs import tts_pb2, tts_pb2_grpc


async def speak(tts_address: str, text: str, rate: int, lead_s: float = 0.5, tail_s: float = 2.0) -> bytes:
    """PCM16 mono at ``rate``: ``lead_s`` of silence, ``text`` spoken, ``tail_s`` of silence.
    Raises ValueError when the TTS returned no audio for the text."""
    async with grpc.aio.insecure_channel(tts_address) as ch:
        stub = tts_pb2_grpc.SynthesizerStub(ch)
        pcm, src = bytearray(), 0
        async for chunk in stub.Synthesize(tts_pb2.SynthesizeRequest(text=text)):
            pcm += chunk.audio
            src = chunk.sample_rate_hz or src
    if not pcm or not src:
        raise ValueError(f"the TTS at {tts_address} returned no audio for {text!r}")
    return silence(lead_s * 1000, rate) + resample_pcm16(bytes(pcm), src, rate) + silence(tail_s * 1000, rate)
