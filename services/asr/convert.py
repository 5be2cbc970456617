"""Protobuf <-> the ASR service's own types: the only module besides the
servicer and __main__ that touches voice.v1 messages."""
from __future__ import annotations

from typing import AsyncIterator

from common.stubs import asr_pb2, common_pb2
from services.asr.results import (Audio, EndOfUtterance, Event, Flush, InvalidRequest, Result,
                                  StreamConfig)


def event_from_pb(req: asr_pb2.RecognizeRequest) -> Event | None:
    """One request → one event; None for a control message that asks nothing."""
    kind = req.WhichOneof("request")
    if kind == "config":
        c = req.config
        return StreamConfig(language=c.language, interim_results=c.interim_results,
                            beam_size=c.beam_size, sample_rate_hz=c.sample_rate_hz,
                            interim_interval_ms=c.interim_interval_ms, omit_words=c.omit_words,
                            background=c.priority == common_pb2.PRIORITY_BACKGROUND)
    if kind == "audio":
        return Audio(req.audio)
    if kind == "control":
        ctl = req.control
        if ctl.force_eou and ctl.flush:
            raise InvalidRequest("Control sets both force_eou and flush: send one "
                                 "(force_eou ends the utterance, flush keeps it open)")
        if ctl.use_provisional and not ctl.force_eou:
            raise InvalidRequest("Control.use_provisional needs force_eou: it says what the "
                                 "final of the ending utterance is")
        if ctl.force_eou:
            return EndOfUtterance(use_provisional=ctl.use_provisional)
        return Flush() if ctl.flush else None
    raise InvalidRequest("empty RecognizeRequest: set one of config, audio or control")


async def events_from_pb(requests: AsyncIterator[asr_pb2.RecognizeRequest]) -> AsyncIterator[Event]:
    async for req in requests:
        ev = event_from_pb(req)
        if ev is not None:
            yield ev


def result_to_pb(r: Result) -> asr_pb2.RecognizeResponse:
    return asr_pb2.RecognizeResponse(
        text=r.text, is_final=r.is_final, stability=r.stability,
        audio_processed_ms=r.audio_processed_ms, changed_words=r.changed_words,
        words=[asr_pb2.WordInfo(word=w.word, start_ms=w.start_ms, end_ms=w.end_ms,
                                probability=w.probability) for w in r.words],
        utterance_index=r.utterance_index, processing_ms=r.processing_ms,
        provisional=r.provisional)


def config_to_pb(c: StreamConfig) -> asr_pb2.RecognitionConfig:
    """For clients written against our types (tests, benchmarks)."""
    return asr_pb2.RecognitionConfig(language=c.language, interim_results=c.interim_results,
                                     beam_size=c.beam_size, sample_rate_hz=c.sample_rate_hz,
                                     interim_interval_ms=c.interim_interval_ms,
                                     omit_words=c.omit_words)
