"""Invariant: a long-lived VAD or ASR stream puts each speech segment and each
utterance into the trace of the user turn it belongs to. The turn's context
travels in-band (TraceContext); the real services, on real speech, export one
span per segment/utterance parented on that context, never one per frame."""
from __future__ import annotations

import asyncio

import grpc

from common.audio import read_wav, silence
from common.stubs import asr_pb2, asr_pb2_grpc, common_pb2, vad_pb2, vad_pb2_grpc
from tests.observability.otlp_sink import OtlpSink
from tests.procs import clips, running

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT}-01"
CHUNK = 640  # 20 ms at 16 kHz


def _speech() -> bytes:
    pcm, rate = read_wav(clips()[1][0])
    assert rate == 16000
    return silence(500, 16000) + pcm + silence(800, 16000)


async def _vad(address: str, pcm: bytes) -> int:
    async def requests():
        yield vad_pb2.DetectRequest(config=vad_pb2.VadConfig(sample_rate_hz=16000))
        late = 1500 * 32   # 1.5 s in: the VAD already decided speech started at ~0.6 s
        for i in range(0, len(pcm), CHUNK):
            if i == late:   # the turn's context arrives after the segment began, as from a gateway
                yield vad_pb2.DetectRequest(trace=common_pb2.TraceContext(traceparent=TRACEPARENT))
            yield vad_pb2.DetectRequest(audio=pcm[i:i + CHUNK])

    async with grpc.aio.insecure_channel(address) as ch:
        events = [r async for r in vad_pb2_grpc.VoiceActivityStub(ch).StreamingDetect(requests())]
    return sum(1 for e in events if e.WhichOneof("event") == "speech_stopped")


async def _asr(address: str, pcm: bytes) -> int:
    async def requests():
        yield asr_pb2.RecognizeRequest(config=asr_pb2.RecognitionConfig(language="en", sample_rate_hz=16000))
        yield asr_pb2.RecognizeRequest(trace=common_pb2.TraceContext(traceparent=TRACEPARENT))
        for i in range(0, len(pcm), CHUNK):
            yield asr_pb2.RecognizeRequest(audio=pcm[i:i + CHUNK])
        yield asr_pb2.RecognizeRequest(control=asr_pb2.Control(force_eou=True))

    async with grpc.aio.insecure_channel(address) as ch:
        results = [r async for r in asr_pb2_grpc.RecognizerStub(ch).StreamingRecognize(requests())]
    return sum(1 for r in results if r.is_final)


def test_segment_and_utterance_spans_join_the_turn_trace():
    pcm = _speech()
    with OtlpSink() as sink:
        env = {"VAD_OTLP_ENDPOINT": sink.endpoint, "ASR_OTLP_ENDPOINT": sink.endpoint}
        with running("services.vad", "VAD_", env) as vad, running("services.asr", "ASR_", env) as asr:
            assert asyncio.run(_vad(vad.address, pcm)) == 1
            assert asyncio.run(_asr(asr.address, pcm)) == 1
        # The processes flushed their spans on SIGTERM.
        assert sink.wait_for(lambda spans: {"vad.speech_segment", "asr.utterance"}
                             <= {s.name for s in spans if s.trace_id == TRACE_ID})
        spans = sink.trace(TRACE_ID)
    names = sorted(s.name for s in spans)
    assert names.count("vad.speech_segment") == 1 and names.count("asr.utterance") == 1, names
    for s in spans:
        assert s.parent_span_id == PARENT, s
    seg = next(s for s in spans if s.name == "vad.speech_segment")
    assert seg.service == "vad" and seg.attributes["vad.end_ms"] > seg.attributes["vad.onset_ms"]
