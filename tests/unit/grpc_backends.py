"""Scripted speech services on a real in-process grpc.aio server (no model),
so the gateway's real gRPC clients can be tested against hangs, failures and
slow answers in milliseconds. Each servicer does what ``mode`` says:

- ``ok``: answers at once (LLM: two tokens and done; TTS: two chunks; ASR: a
  final for each end of utterance, a provisional for each flush; RAG: one
  passage; VAD: no events, a progress response per ``progress_ms`` of audio)
- ``hang``: accepts the call and never answers
- ``hang_after_one``: one message, then nothing (LLM and TTS)
- ``fail``: UNAVAILABLE at once"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import grpc

from common.stubs import (
    asr_pb2, asr_pb2_grpc, common_pb2, llm_pb2, llm_pb2_grpc, rag_pb2, rag_pb2_grpc, tts_pb2, tts_pb2_grpc,
    vad_pb2, vad_pb2_grpc,
)


class Modes:
    def __init__(self) -> None:
        self.llm = self.tts = self.asr = self.rag = self.vad = "ok"
        self.calls: dict[str, int] = {"llm": 0, "tts": 0, "asr": 0, "rag": 0, "vad": 0}


async def _forever() -> None:
    await asyncio.Event().wait()


class _Chat(llm_pb2_grpc.ChatServicer):
    def __init__(self, m: Modes) -> None:
        self.m = m

    async def Generate(self, request, context):
        self.m.calls["llm"] += 1
        if self.m.llm == "fail":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted failure")
        if self.m.llm == "hang":
            await _forever()
        yield llm_pb2.GenerateResponse(delta=llm_pb2.TokenDelta(text="Hello", index=0))
        if self.m.llm == "hang_after_one":
            await _forever()
        yield llm_pb2.GenerateResponse(delta=llm_pb2.TokenDelta(text=" there.", index=1))
        yield llm_pb2.GenerateResponse(done=llm_pb2.GenerateDone(finish_reason="stop"))


class _Tts(tts_pb2_grpc.SynthesizerServicer):
    def __init__(self, m: Modes) -> None:
        self.m = m

    async def Synthesize(self, request, context):
        self.m.calls["tts"] += 1
        if self.m.tts == "fail":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted failure")
        if self.m.tts == "hang":
            await _forever()
        yield tts_pb2.AudioChunk(audio=b"\0\0" * 240, sample_rate_hz=24000)
        if self.m.tts == "hang_after_one":
            await _forever()
        yield tts_pb2.AudioChunk(audio=b"\0\0" * 240, sample_rate_hz=24000, last=True)


class _Asr(asr_pb2_grpc.RecognizerServicer):
    def __init__(self, m: Modes) -> None:
        self.m = m

    async def StreamingRecognize(self, request_iterator, context) -> AsyncIterator[asr_pb2.RecognizeResponse]:
        self.m.calls["asr"] += 1
        index = 0
        async for req in request_iterator:
            if req.WhichOneof("request") != "control" or self.m.asr == "hang":
                continue
            if req.control.flush:
                yield asr_pb2.RecognizeResponse(text="hello", provisional=True, utterance_index=index)
            elif req.control.force_eou:
                yield asr_pb2.RecognizeResponse(text="hello", is_final=True, utterance_index=index)
                index += 1


class _Vad(vad_pb2_grpc.VoiceActivityServicer):
    def __init__(self, m: Modes) -> None:
        self.m = m

    async def StreamingDetect(self, request_iterator, context) -> AsyncIterator[vad_pb2.DetectResponse]:
        self.m.calls["vad"] += 1
        every = processed = reported = 0
        async for req in request_iterator:
            kind = req.WhichOneof("request")
            if kind == "config":
                every = req.config.progress_ms
            elif kind == "audio" and self.m.vad != "hang":
                processed += len(req.audio) // 32
                if every and processed - reported >= every:
                    reported = processed
                    yield vad_pb2.DetectResponse(audio_processed_ms=processed)


class _Rag(rag_pb2_grpc.RetrieverServicer):
    def __init__(self, m: Modes) -> None:
        self.m = m

    async def Search(self, request, context):
        self.m.calls["rag"] += 1
        if self.m.rag == "fail":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted failure")
        if self.m.rag == "hang":
            await _forever()
        return rag_pb2.SearchResponse(passages=[common_pb2.Passage(source="a.md", title="A", text="x",
                                                                   score=0.9)])


@contextlib.asynccontextmanager
async def scripted_server(options: list | None = None) -> AsyncIterator[tuple[str, Modes]]:
    """Yields (address, modes) of a started server; stops it on exit."""
    modes = Modes()
    server = grpc.aio.server(options=options or [])
    llm_pb2_grpc.add_ChatServicer_to_server(_Chat(modes), server)
    tts_pb2_grpc.add_SynthesizerServicer_to_server(_Tts(modes), server)
    asr_pb2_grpc.add_RecognizerServicer_to_server(_Asr(modes), server)
    rag_pb2_grpc.add_RetrieverServicer_to_server(_Rag(modes), server)
    vad_pb2_grpc.add_VoiceActivityServicer_to_server(_Vad(modes), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", modes
    finally:
        await server.stop(0)
