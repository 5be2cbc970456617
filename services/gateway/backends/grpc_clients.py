"""Real gRPC clients of the speech services (grpc.aio). Every call carries the
current trace context; every failure becomes a BackendError naming the service
and address; cancelling an iteration cancels the RPC (so the server sees
CANCELLED and stops its work)."""
from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator, Sequence

import grpc

from common.stubs import asr_pb2_grpc, llm_pb2_grpc, rag_pb2_grpc, tts_pb2_grpc, vad_pb2_grpc
from common.tracing import inject_metadata
from services.gateway.backends import convert, health
from services.gateway.backends.types import (
    AsrParams, AsrResult, AudioPiece, BackendError, ChatMessage, LlmUsage, Passage, VadEvent,
    VadParams,
)

log = logging.getLogger(__name__)


def _error(name: str, address: str, exc: grpc.aio.AioRpcError) -> BackendError:
    code = exc.code()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BackendError(name, address, f"rejected the request: {exc.details()}")
    return BackendError(name, address, f"{code.name.lower()}: {exc.details() or ''}".rstrip(": "))


class _Client:
    def __init__(self, name: str, address: str, channel: grpc.aio.Channel, timeout_s: float) -> None:
        self.name, self.address, self._channel, self._timeout = name, address, channel, timeout_s

    async def ready(self) -> bool:
        """SERVING on grpc.health.v1 (checked before (re)opening a stream)."""
        return await health.check(self._channel) == "SERVING"


class _Duplex:
    """A bidirectional stream driven with write()/read(); closes by cancelling."""

    def __init__(self, name: str, address: str, call: grpc.aio.StreamStreamCall) -> None:
        self.name, self.address, self._call = name, address, call
        # grpc.aio allows one write in flight per call: a second concurrent
        # write() fails the whole call with INTERNAL ("Internal error from
        # Core", grpc/grpc#36066). Audio (the input task), flush and end of
        # utterance (the VAD reader) and trace contexts come from different tasks.
        self._write_lock = asyncio.Lock()

    async def _write(self, req) -> None:
        try:
            async with self._write_lock:
                await self._call.write(req)
        except grpc.aio.AioRpcError as exc:
            raise _error(self.name, self.address, exc) from exc
        except (grpc.aio.UsageError, RuntimeError) as exc:  # stream already finished
            raise BackendError(self.name, self.address, f"stream closed: {exc}") from exc

    async def _read(self):
        try:
            while True:
                resp = await self._call.read()
                if resp is grpc.aio.EOF:
                    return
                yield resp
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED and self._call.cancelled():
                return  # we closed it
            raise _error(self.name, self.address, exc) from exc

    async def close(self) -> None:
        self._call.cancel()


class GrpcVadStream(_Duplex):
    async def send(self, pcm16k: bytes) -> None:
        await self._write(convert.vad_audio(pcm16k))

    async def send_trace(self, carrier: dict[str, str]) -> None:
        """The user turn the next speech segments belong to (W3C context)."""
        await self._write(convert.vad_trace(carrier))

    async def events(self) -> AsyncIterator[VadEvent]:
        async for resp in self._read():
            ev = convert.vad_event(resp)
            if ev is not None:
                yield ev


class GrpcAsrStream(_Duplex):
    async def send(self, pcm16k: bytes) -> None:
        await self._write(convert.asr_audio(pcm16k))

    async def end_utterance(self, use_provisional: bool = False) -> None:
        await self._write(convert.asr_eou(use_provisional))

    async def flush(self) -> None:
        await self._write(convert.asr_flush())

    async def send_trace(self, carrier: dict[str, str]) -> None:
        await self._write(convert.asr_trace(carrier))

    async def results(self) -> AsyncIterator[AsrResult]:
        async for resp in self._read():
            yield convert.asr_result(resp)


class GrpcVad(_Client):
    async def open(self, params: VadParams) -> GrpcVadStream:
        stub = vad_pb2_grpc.VoiceActivityStub(self._channel)
        s = GrpcVadStream(self.name, self.address, stub.StreamingDetect(metadata=inject_metadata()))
        await s._write(convert.vad_config(params))
        return s


class GrpcAsr(_Client):
    async def open(self, params: AsrParams) -> GrpcAsrStream:
        stub = asr_pb2_grpc.RecognizerStub(self._channel)
        s = GrpcAsrStream(self.name, self.address, stub.StreamingRecognize(metadata=inject_metadata()))
        await s._write(convert.asr_config(params))
        return s


class GrpcLlm(_Client):
    async def generate(self, messages: Sequence[ChatMessage], passages: Sequence[Passage],
                       max_tokens: int, request_id: str, usage: LlmUsage) -> AsyncIterator[str]:
        stub = llm_pb2_grpc.ChatStub(self._channel)
        call = stub.Generate(convert.generate_request(messages, passages, max_tokens, request_id),
                             metadata=inject_metadata(), timeout=self._timeout)
        try:
            async for resp in call:
                text = convert.generate_event(resp, usage)
                if text:
                    yield text
        except grpc.aio.AioRpcError as exc:
            raise _error(self.name, self.address, exc) from exc
        finally:
            # Reached on barge-in (task cancelled) and on early exit: the server
            # must see CANCELLED and stop decoding.
            if not call.done():
                call.cancel()


    async def prefill(self, messages: Sequence[ChatMessage], request_id: str) -> str:
        """Warm an instance with a turn still being spoken; the finish reason."""
        stub = llm_pb2_grpc.ChatStub(self._channel)
        call = stub.Generate(convert.generate_request(messages, (), 0, request_id, prefill=True),
                             metadata=inject_metadata(), timeout=min(self._timeout, 5.0))
        usage = LlmUsage()
        try:
            async for resp in call:
                convert.generate_event(resp, usage)
        except grpc.aio.AioRpcError as exc:
            raise _error(self.name, self.address, exc) from exc
        finally:
            if not call.done():
                call.cancel()
        return usage.finish_reason


class GrpcRag(_Client):
    async def search(self, query: str, k: int, min_score: float) -> list[Passage]:
        stub = rag_pb2_grpc.RetrieverStub(self._channel)
        try:
            resp = await stub.Search(convert.search_request(query, k, min_score),
                                     metadata=inject_metadata(), timeout=min(self._timeout, 5.0))
        except grpc.aio.AioRpcError as exc:
            raise _error(self.name, self.address, exc) from exc
        return convert.passages(resp)


class GrpcTts(_Client):
    async def synthesize(self, text: str, voice: str, speed: float) -> AsyncIterator[AudioPiece]:
        stub = tts_pb2_grpc.SynthesizerStub(self._channel)
        call = stub.Synthesize(convert.synthesize_request(text, voice, speed),
                               metadata=inject_metadata(), timeout=self._timeout)
        try:
            async for chunk in call:
                if chunk.audio:
                    yield convert.audio_piece(chunk)
        except grpc.aio.AioRpcError as exc:
            raise _error(self.name, self.address, exc) from exc
        finally:
            if not call.done():
                call.cancel()
