"""gRPC face of the VAD: a thin state machine over :mod:`services.vad.engine`.

Config first, then audio; each audio message's whole frames are classified
in one call. A message of one or two frames (what a real-time client sends)
is classified on the event loop: a frame costs ~0.6 ms of CPU, and handing
it to a worker thread cost more than that (thread wake-ups and the GIL going
back and forth: 0.085 against 0.053 cores per stream of 32 ms messages,
docs/capacity-rechecks.md, re-check 4). Bigger messages go to a worker
thread, so the loop is never held for more than ~1.5 ms. A stop
whose pause was given to the end-of-turn model waits for that score (begun a
min_silence earlier, so mostly done) at most TURN_WAIT_S, then goes without."""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future
from typing import AsyncIterator, NoReturn

import grpc

from common import metrics as common_metrics
from common.status import StreamStats, status_to_pb
from common.tracing import StretchSpans
from common.stubs import common_pb2, vad_pb2, vad_pb2_grpc
from services.vad import convert
from services.vad import metrics as m
from services.vad.engine import PushResult, VadEngine
from services.vad.progress import Progress
from services.vad.segmenter import SpeechStart, SpeechStop

log = logging.getLogger(__name__)
INLINE_FRAMES = 2   # a push of at most this many frames runs on the event loop (docstring)
TURN_WAIT_S = 0.5   # a stop is never held longer than this for its end-of-turn score


class VadServicer(vad_pb2_grpc.VoiceActivityServicer):
    def __init__(self, engine: VadEngine, model_label: str, max_streams: int) -> None:
        self.engine = engine
        self.max_streams = max_streams
        self.stats = StreamStats("vad", model_label)

    async def StreamingDetect(self, request_iterator: AsyncIterator[vad_pb2.DetectRequest],
                              context: grpc.aio.ServicerContext) -> AsyncIterator[vad_pb2.DetectResponse]:
        if self.stats.active >= self.max_streams:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"VAD is serving {self.stats.active} streams, its limit (VAD_MAX_STREAMS)")
        async with self.stats.track():
            spans = StretchSpans("vad", "vad.speech_segment")   # one span per segment, per turn trace
            try:
                async for resp in self._serve(request_iterator, context, spans):
                    yield resp
            finally:
                spans.end()

    async def _serve(self, request_iterator: AsyncIterator[vad_pb2.DetectRequest],
                     context: grpc.aio.ServicerContext,
                     spans: StretchSpans) -> AsyncIterator[vad_pb2.DetectResponse]:
        stream = None
        progress = Progress(0)
        async for req in request_iterator:
            kind = req.WhichOneof("request")
            if kind == "trace":
                spans.set_parent(req.trace.traceparent, req.trace.tracestate)
            elif kind == "config":
                if stream is not None:
                    await _invalid(context, "config sent twice: send it once, as the first message")
                try:
                    params = convert.params_from_config(req.config)
                    progress = Progress(convert.progress_ms_from_config(req.config))
                except ValueError as exc:
                    await _invalid(context, f"bad config: {exc}")
                stream = self.engine.open(params)
            elif kind == "audio":
                if stream is None:
                    await _invalid(context, "first message must be config (a VadConfig), got audio")
                if len(req.audio) % 2:
                    await _invalid(context, f"audio chunk has {len(req.audio)} bytes, an odd count: "
                                            "PCM16 needs 2 bytes per sample")
                if stream.frames_in(len(req.audio)) <= INLINE_FRAMES:
                    result = stream.push(req.audio)
                else:
                    result = await asyncio.to_thread(stream.push, req.audio)
                for resp in progress.with_progress(await self._responses(result, spans),
                                                   result.audio_processed_ms):
                    yield resp
            else:
                await _invalid(context, "empty DetectRequest: set config, audio or trace")
        if stream is None:
            await _invalid(context, "first message must be config: the stream ended without one")
        for resp in await self._responses(stream.finish(), spans):
            yield resp

    async def _responses(self, result: PushResult, spans: StretchSpans) -> list[vad_pb2.DetectResponse]:
        b = common_metrics.base()
        if result.frame_seconds:
            m.FRAMES.labels(**b).inc(len(result.frame_seconds))
            hist = m.FRAME_SECONDS.labels(**b)
            for t in result.frame_seconds:
                hist.observe(t)
        out = []
        for ev in result.events:
            prob = None
            if isinstance(ev, SpeechStart):
                m.SEGMENTS.labels(**b).inc()
                spans.start(**{"vad.onset_ms": ev.audio_ms})
            elif isinstance(ev, SpeechStop):
                spans.end(**{"vad.end_ms": ev.audio_ms})
                if ev.turn is not None:
                    prob = await _turn_score(ev.turn)
            out.append(convert.event_to_pb(ev, result.audio_processed_ms, prob))
        return out

    async def GetStatus(self, request: common_pb2.StatusRequest,
                        context: grpc.aio.ServicerContext) -> common_pb2.ServiceStatus:
        return status_to_pb(self.stats)


async def _turn_score(fut: Future) -> float | None:
    """The pause's end-of-turn probability, or None when it failed or is late."""
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(TURN_WAIT_S):   # not wait_for: it can drop a cancel (gh-86296)
            prob = await asyncio.wrap_future(fut)
    except TimeoutError:
        log.warning("end-of-turn score not ready %.1f s after the stop: sent without it", TURN_WAIT_S)
        return None
    except Exception:   # noqa: BLE001 - the stop matters more than its score
        log.exception("end-of-turn model failed")
        return None
    m.TURN_WAIT_SECONDS.labels(**common_metrics.base()).observe(time.perf_counter() - t0)
    return prob


async def _invalid(context: grpc.aio.ServicerContext, message: str) -> NoReturn:
    """Reject this stream only; abort raises, so callers never continue."""
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
    raise AssertionError("unreachable: ServicerContext.abort raises")
