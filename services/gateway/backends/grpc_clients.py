"""Real gRPC clients of the speech services (grpc.aio). Every call carries the
current trace context; every failure becomes a BackendError naming the service
and address; cancelling an iteration cancels the RPC (so the server sees
CANCELLED and stops its work). Every call has a deadline (deadlines.py): unary
ones a gRPC timeout, streams an idle limit on the reply they owe."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator, Callable, Sequence

import grpc

from common.stubs import asr_pb2_grpc, llm_pb2_grpc, rag_pb2_grpc, tts_pb2_grpc, vad_pb2_grpc
from common.tracing import inject_metadata
from services.gateway.backends import convert, health
from services.gateway.backends.deadlines import DEFAULT_IDLE_S, ReplyWatch, read_within, wait_reply
from services.gateway.backends.types import (
    AsrParams, AsrResult, AudioPiece, BackendError, ChatMessage, LlmUsage, Passage, Priority,
    ToolCall, Tools, VadEvent, VadParams,
)
from services.gateway.faults.calls import inject, inject_duplex, inject_unary

# Progress asked of the VAD: one response with no event per second of audio
# (a stream costs one small message a second); slack before it is owed.
VAD_PROGRESS_MS = 1000
VAD_SLACK_MS = 500

log = logging.getLogger(__name__)


def _error(name: str, address: str, exc: grpc.aio.AioRpcError) -> BackendError:
    code = exc.code()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BackendError(name, address, f"rejected the request: {exc.details()}", retryable=False)
    return BackendError(name, address, f"{code.name.lower()}: {exc.details() or ''}".rstrip(": "))


class _Client:
    def __init__(self, name: str, address: str, channel: grpc.aio.Channel, timeout_s: float,
                 idle_s: float = DEFAULT_IDLE_S, faults=None, variant: str = "stable") -> None:
        self.name, self.address, self._channel, self._timeout = name, address, channel, timeout_s
        self._idle = idle_s
        self._faults = faults     # a drill's FaultTable (services/gateway/faults), or None
        self.variant = variant    # the pool this address was chosen from (a fault may target one)

    async def ready(self) -> bool:
        """SERVING on grpc.health.v1 (checked before (re)opening a stream)."""
        return await health.check(self._channel) == "SERVING"


class _Duplex:
    """A bidirectional stream driven with write()/read(); closes by cancelling."""

    def __init__(self, name: str, address: str, call: grpc.aio.StreamStreamCall,
                 idle_s: float = DEFAULT_IDLE_S, now: Callable[[], float] = time.monotonic) -> None:
        self.name, self.address, self._call = name, address, call
        self.watch, self._now = ReplyWatch(idle_s), now
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
        except (grpc.aio.UsageError, RuntimeError, asyncio.InvalidStateError) as exc:
            # The stream already finished: the server ended it (e.g. RESOURCE_EXHAUSTED
            # at open; grpc.aio then raises InvalidStateError "RPC already finished").
            raise BackendError(self.name, self.address, f"stream closed: {exc}") from exc

    def _expect_reply(self) -> None:
        self.watch.expect(self._now())

    def _replied(self, resp) -> bool:
        """Whether ``resp`` answers a request that asked for a reply."""
        return False

    async def _read(self):
        # The read runs as a task so the idle check can look at the clock
        # without cancelling it (a cancelled read cancels the call).
        read: asyncio.Future | None = None
        try:
            while True:
                read = asyncio.ensure_future(self._call.read())
                resp = await wait_reply(read, self.watch, self._now, self.name, self.address, "reply")
                read = None
                if resp is grpc.aio.EOF:
                    return
                if self._replied(resp):
                    self.watch.answered()
                else:
                    self.watch.progress(self._now())
                yield resp
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED and self._call.cancelled():
                return  # we closed it
            raise _error(self.name, self.address, exc) from exc
        except asyncio.CancelledError:
            # A read pending when close() cancels the call raises CancelledError
            # in the reader although nobody cancelled the reader's task: that is
            # the stream ending (a restart with new settings reopens it). Seen as
            # a task cancellation, it silently ended the session's VAD stream
            # after a session.update to semantic_vad (no speech heard again).
            task = asyncio.current_task()
            if self._call.cancelled() and task is not None and not task.cancelling():
                return
            raise
        finally:
            if read is not None and not read.done():
                read.cancel()   # hung, or the reader was cancelled: the call goes with it

    async def close(self) -> None:
        self._call.cancel()


class GrpcVadStream(_Duplex):
    """The VAD answers speech with events and silence with nothing, so silence
    alone cannot tell a hung VAD from a quiet room. It is asked for a progress
    response after every ``progress_ms`` of audio (VadConfig.progress_ms); audio
    sent and not acknowledged for longer than that (plus ``VAD_SLACK_MS`` for its
    frames and end-of-turn scoring) owes a reply, and ``idle_s`` without one is a
    hang (BackendError naming the VAD: the keeper reopens the stream)."""

    def __init__(self, name: str, address: str, call: grpc.aio.StreamStreamCall,
                 idle_s: float = DEFAULT_IDLE_S, now: Callable[[], float] = time.monotonic,
                 progress_ms: int = VAD_PROGRESS_MS) -> None:
        super().__init__(name, address, call, idle_s, now)
        self.progress_ms = progress_ms
        self.sent_ms = 0.0      # audio written, ms
        self.acked_ms = 0       # audio the VAD said it processed, ms

    def _owed(self) -> bool:
        return self.progress_ms > 0 and self.sent_ms - self.acked_ms >= self.progress_ms + VAD_SLACK_MS

    async def send(self, pcm16k: bytes) -> None:
        await self._write(convert.vad_audio(pcm16k))
        self.sent_ms += len(pcm16k) / 32   # 16 kHz PCM16: 32 bytes per ms
        if self._owed():
            self._expect_reply()

    def _replied(self, resp) -> bool:
        self.acked_ms = max(self.acked_ms, int(resp.audio_processed_ms))
        return not self._owed()

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
        self._expect_reply()   # a final is owed
        await self._write(convert.asr_eou(use_provisional))

    async def flush(self) -> None:
        self._expect_reply()   # a provisional final is owed
        await self._write(convert.asr_flush())

    def _replied(self, resp) -> bool:
        return resp.is_final or resp.provisional

    async def send_trace(self, carrier: dict[str, str]) -> None:
        await self._write(convert.asr_trace(carrier))

    async def results(self) -> AsyncIterator[AsrResult]:
        async for resp in self._read():
            yield convert.asr_result(resp)


class GrpcVad(_Client):
    def __init__(self, *args, progress: bool = True, **kw) -> None:
        super().__init__(*args, **kw)
        self.progress = progress     # off: no progress asked, a hang goes unnoticed (GATEWAY_VAD_IDLE_TIMEOUT_S=0)

    async def open(self, params: VadParams) -> GrpcVadStream:
        stub = vad_pb2_grpc.VoiceActivityStub(self._channel)
        call = inject_duplex(self._faults, self.name, stub.StreamingDetect(metadata=inject_metadata()),
                             self.variant)
        s = GrpcVadStream(self.name, self.address, call, self._idle,
                          progress_ms=VAD_PROGRESS_MS if self.progress else 0)
        await _first_write(s, convert.vad_config(params, s.progress_ms))
        return s


class GrpcAsr(_Client):
    async def open(self, params: AsrParams) -> GrpcAsrStream:
        stub = asr_pb2_grpc.RecognizerStub(self._channel)
        call = inject_duplex(self._faults, self.name, stub.StreamingRecognize(metadata=inject_metadata()),
                             self.variant)
        s = GrpcAsrStream(self.name, self.address, call, self._idle)
        await _first_write(s, convert.asr_config(params))
        return s


async def _first_write(stream: _Duplex, config) -> None:
    """Send a new stream's config; a failure or a cancellation (a session
    closed while its streams open) cancels the call. Left open, its server
    kept the stream, and with it one of its slots, for good: the drills'
    history check resumes and closes a dozen sessions at once, and the ASR
    refused every new stream at its maximum of 8 (fresh-clone CI, 2026-12-05)."""
    try:
        await stream._write(config)
    except BaseException:
        await stream.close()
        raise


class GrpcLlm(_Client):
    async def generate(self, messages: Sequence[ChatMessage], passages: Sequence[Passage],
                       max_tokens: int, request_id: str, usage: LlmUsage,
                       priority: Priority = Priority.URGENT,
                       tools: Tools | None = None, passage_query: str = "",
                       conversation: str = "") -> AsyncIterator[str | ToolCall]:
        stub = llm_pb2_grpc.ChatStub(self._channel)
        call = inject(self._faults, self.name, stub.Generate(
            convert.generate_request(messages, passages, max_tokens, request_id, prio=priority, tools=tools,
                                     passage_query=passage_query, conversation=conversation),
            metadata=inject_metadata(), timeout=self._timeout), self.variant)
        try:
            while (resp := await read_within(call, self._idle, self.name, self.address,
                                             "token")) is not grpc.aio.EOF:
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


    async def prefill(self, messages: Sequence[ChatMessage], request_id: str,
                      passages: Sequence[Passage] = (), tools: Tools | None = None,
                      passage_query: str = "", conversation: str = "") -> str:
        """Warm an instance with a turn still being spoken; the finish reason."""
        stub = llm_pb2_grpc.ChatStub(self._channel)
        call = inject(self._faults, self.name, stub.Generate(
            convert.prefill_request(messages, request_id, passages, tools, passage_query, conversation),
            metadata=inject_metadata(),
            timeout=min(self._timeout, 5.0)), self.variant)
        usage = LlmUsage()
        try:
            while (resp := await read_within(call, self._idle, self.name, self.address,
                                             "reply")) is not grpc.aio.EOF:
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
            timeout = min(self._timeout, 5.0)
            resp = await inject_unary(self._faults, self.name, stub.Search(
                convert.search_request(query, k, min_score), metadata=inject_metadata(), timeout=timeout),
                timeout, self.variant)
        except grpc.aio.AioRpcError as exc:
            raise _error(self.name, self.address, exc) from exc
        return convert.passages(resp)


class GrpcTts(_Client):
    async def synthesize(self, text: str, voice: str, speed: float,
                         priority: Priority = Priority.URGENT) -> AsyncIterator[AudioPiece]:
        stub = tts_pb2_grpc.SynthesizerStub(self._channel)
        call = inject(self._faults, self.name, stub.Synthesize(
            convert.synthesize_request(text, voice, speed, priority), metadata=inject_metadata(),
            timeout=self._timeout), self.variant)
        try:
            while (chunk := await read_within(call, self._idle, self.name, self.address,
                                              "audio")) is not grpc.aio.EOF:
                if chunk.audio:
                    yield convert.audio_piece(chunk)
        except grpc.aio.AioRpcError as exc:
            raise _error(self.name, self.address, exc) from exc
        finally:
            if not call.done():
                call.cancel()
