"""Protobuf <-> TTS engine types: the only module besides the servicer and
__main__ that touches tts_pb2."""
from __future__ import annotations

from common.stubs import common_pb2, tts_pb2
from services.tts.engine import AudioPiece, SynthesisRequest
from services.tts.scheduler import Priority
from services.tts.voices import VoiceInfo


def priority_from_pb(p: int) -> Priority:
    """Only an explicit BACKGROUND is background: unspecified (older clients)
    and values from a newer proto keep the latency they always had."""
    return Priority.BACKGROUND if p == common_pb2.PRIORITY_BACKGROUND else Priority.URGENT


def request_from_pb(req: tts_pb2.SynthesizeRequest) -> SynthesisRequest:
    return SynthesisRequest(text=req.text, voice=req.voice, speaking_rate=req.speaking_rate,
                            sample_rate_hz=req.sample_rate_hz, priority=priority_from_pb(req.priority))


def piece_to_pb(p: AudioPiece) -> tts_pb2.AudioChunk:
    return tts_pb2.AudioChunk(audio=p.audio, sample_rate_hz=p.sample_rate, clause_index=p.clause_index,
                              clause_text=p.clause_text, last=p.last)


def voices_to_pb(voices: list[VoiceInfo], default: str) -> tts_pb2.ListVoicesResponse:
    return tts_pb2.ListVoicesResponse(
        voices=[tts_pb2.Voice(id=v.id, language=v.language, sample_rate_hz=v.sample_rate,
                              description=v.description) for v in voices],
        default_voice=default)
